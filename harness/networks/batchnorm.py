"""BatchNorm statistics of a network that will be used frozen.

A never-trained (``random``) network's BatchNorm layers hold their initial running
statistics (mean 0, variance 1), which describe no input; used frozen, they scale every
activation arbitrarily. Both the frozen-feature extraction
(:mod:`harness.evaluation.layer_features`) and the VOC07 evaluators' frozen trunk
therefore first replace them by the exact statistics of one pass over training images,
here.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def batchnorm_layers(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``module`` (any dimension), in module order."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def needs_bn_recompute(origin: str, module: nn.Module) -> bool:
    """Whether ``module``'s BatchNorm statistics must be recomputed before it is used
    frozen: it was never trained (``origin`` is ``random``) and it has BatchNorm layers."""
    return origin == "random" and bool(batchnorm_layers(module))


def recompute_bn(net: nn.Module, batches: Iterable[torch.Tensor]) -> bool:
    """Replace the BatchNorm running statistics of ``net`` by the exact mean over
    ``batches`` (each batch weighs the same); False if ``net`` has no BatchNorm.

    Only the BatchNorm layers run in training mode (dropout and every other layer stay
    in eval mode), nothing is differentiated, and every module's mode and every
    BatchNorm's momentum are restored afterwards.
    """
    bns = batchnorm_layers(net)
    if not bns:
        return False
    modes = {m: m.training for m in net.modules()}
    momenta = {bn: bn.momentum for bn in bns}
    net.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None          # cumulative average over all batches
        bn.train()
    try:
        with torch.no_grad():
            for x in batches:
                net(x)
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return True
