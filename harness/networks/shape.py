"""The network shape every backbone returns: a trunk, then a fully connected head."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_digest(net: nn.Module) -> str:
    """sha256 of a network's parameters and buffers: identifies its exact weights, so that a
    cache keyed on it follows any change of initialisation code."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class BackboneNet(nn.Module):
    """``head(trunk(x))``, with the split that downstream "Head" evaluation needs.

    ``trunk`` maps images [B, 3, H, W] to a flat feature vector [B, F]; ``head`` is an
    ``nn.Sequential`` of the fully connected part whose last module is the output
    ``nn.Linear`` (fc6-fc8 for AlexNet; only the final layer for ResNet).

    ``layers`` names the intermediate outputs that frozen-feature evaluation may capture
    (:mod:`harness.evaluation.layer_features`): layer name -> dotted module path inside this network
    (``{"conv1": "trunk.0.2", ..., "pool5": "trunk"}``), in input-to-output order. A
    backbone that declares none gets one layer, ``"trunk"``: the trunk's output.
    """

    def __init__(self, trunk: nn.Module, head: nn.Sequential,
                 layers: dict[str, str] | None = None):
        super().__init__()
        if not isinstance(head, nn.Sequential) or not isinstance(head[-1], nn.Linear):
            raise TypeError("head must be an nn.Sequential ending in nn.Linear")
        self.trunk = trunk
        self.head = head
        self._layers = dict(layers) if layers else {"trunk": "trunk"}
        modules = dict(self.named_modules())
        unknown = [path for path in self._layers.values() if path not in modules]
        if unknown:
            raise TypeError(f"layers name modules this network does not have: {unknown}")

    def feature_layers(self) -> dict[str, str]:
        """Layer name -> module path of every capturable layer, input to output."""
        return dict(self._layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    @property
    def num_outputs(self) -> int:
        return self.head[-1].out_features

    def classifier(self) -> nn.Linear:
        """The output layer."""
        return self.head[-1]

    def reset_classifier(self, num_outputs: int) -> None:
        """Replace the output layer by a fresh one with ``num_outputs`` outputs."""
        old = self.head[-1]
        self.head[-1] = nn.Linear(old.in_features, num_outputs).to(old.weight.device)

    def reset_head(self, num_outputs: int) -> None:
        """Re-initialise every layer of the head and give it ``num_outputs`` outputs."""
        for module in self.head.modules():
            if module is not self.head and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self.reset_classifier(num_outputs)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def trunk_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())
