"""AlexNet backbones: the seed's AlexNet with batch normalisation, and torchvision's plain one.

``alexnet`` is the network of DeepCluster (Caron et al. 2018, ``models/alexnet.py``), which
the paper's seed code trained: five convolutions of 96-256-384-384-256 channels, each
followed by batch normalisation and ReLU, max-pooling after conv1, conv2 and conv5, then
fc6 and fc7 of 4,096 units and the output layer fc8. DeepCluster feeds a fixed
Sobel-filtered grey image; like the seed, this one takes RGB.

Dropout (0.5) is on the outputs of fc6 and fc7, after their ReLU, as in Caffe's AlexNet
(``models/bvlc_alexnet/train_val.prototxt``: ``drop6`` and ``drop7`` act on ``fc6`` and
``fc7`` in place after ``relu6`` / ``relu7``), the network Krähenbühl's VOC07 code trains
and the paper evaluates with. DeepCluster's ``models/alexnet.py`` (lines 25-30) puts them
in front of fc6 and fc7 instead; the two differ in whether fc8 sees dropped units.

Small inputs: the convolutions reduce 224 px to 6 x 6 but 64 px to 1 x 1. An adaptive
average pool to ``pool`` x ``pool`` (default 6, as in torchvision's AlexNet) sits between
conv5 and fc6, so the network has the same 9,216-input fc6 -- the same parameters and
checkpoint shapes -- at every input size; at 224 px it is the identity. At 64 px it
repeats conv5's single position 36 times, so the 36 column blocks of fc6 receive
identical gradients and, summed, move 36 times as fast as one block: the effective
learning rate of fc6 is 36x that at 224 px. ``pool=1`` (global average pooling, fc6 of
256 inputs) avoids that for small inputs, at the price of other parameter shapes.

``fc_units`` (default 4,096) narrows fc6 and fc7 for small worlds: at 64 px on a CPU the
4,096 x 4,096 fc7 costs 20x more per step than the whole 1,024-unit head (108 vs 5.7 ms
for a batch of 16, 2 threads), with conv5 giving fc6 only 256 inputs to work from.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.api.errors import BadInputError
from harness.api.interfaces import Backbone

if TYPE_CHECKING:  # torch is imported when a network is built, so listing plugins needs none
    from torch import nn

    from harness.api import BackboneNet

#: (out_channels, kernel, stride, padding) per convolution, "M" for a 3x3/2 max-pool
_DEEPCLUSTER_FEATURES: list[tuple[int, int, int, int] | str] = [
    (96, 11, 4, 2), "M", (256, 5, 1, 2), "M", (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1), "M",
]
_FC_UNITS = 4096

#: the capturable layers (after each ReLU, as DeepCluster's eval_linear.py reads conv1-5;
#: pool5 is what fc6 sees; fc6 and fc7 after their ReLU)
_ALEXNET_BN_LAYERS = {"conv1": "trunk.0.2", "conv2": "trunk.0.6", "conv3": "trunk.0.10",
                      "conv4": "trunk.0.13", "conv5": "trunk.0.16", "pool5": "trunk",
                      "fc6": "head.1", "fc7": "head.4"}
_ALEXNET_TV_LAYERS = {"conv1": "trunk.0.1", "conv2": "trunk.0.4", "conv3": "trunk.0.7",
                      "conv4": "trunk.0.9", "conv5": "trunk.0.11", "pool5": "trunk",
                      "fc6": "head.2", "fc7": "head.5"}


def _features() -> nn.Sequential:
    from torch import nn

    layers: list[nn.Module] = []
    channels = 3
    for spec in _DEEPCLUSTER_FEATURES:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            continue
        out, kernel, stride, padding = spec
        layers += [nn.Conv2d(channels, out, kernel, stride, padding),
                   nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers)


def _init_deepcluster(module: nn.Module) -> None:
    """DeepCluster's initialisation: He-normal convolutions, N(0, 0.01) linear layers.

    The linear layers' 0.01 is for DeepCluster's widths (fc6 of 9,216 inputs, fc7 and fc8 of
    4,096), where it keeps each layer's output about as large as its input (gain
    0.01 x sqrt(fan_in) = 0.96, 0.64). A narrowed head (``pool`` < 6, ``fc_units`` < 4,096)
    scales the standard deviation by sqrt(reference fan-in / fan-in) to keep those gains;
    with 0.01 at fan-in 256 its signal would shrink 6x per layer and a randomly
    initialised head would barely learn at the VOC07 protocols' learning rate of 0.001.
    """
    from torch import nn

    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    reference_fan_in = {id(m): f for m, f in zip(linears, (256 * 6 * 6, _FC_UNITS, _FC_UNITS))}
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            ref = reference_fan_in.get(id(m), m.in_features)
            nn.init.normal_(m.weight, 0.0, 0.01 * math.sqrt(ref / m.in_features))
            nn.init.zeros_(m.bias)


class AlexNetBN(Backbone):
    """AlexNet with batch normalisation after every convolution (DeepCluster's; the seed's)."""

    name = "alexnet"
    description = "AlexNet with BatchNorm after every conv (DeepCluster/seed variant); head = fc6-fc8"

    def __init__(self, *, dropout: float = 0.5, pool: int = 6, fc_units: int = _FC_UNITS):
        if not 0.0 <= dropout < 1.0:
            raise BadInputError(f"alexnet: dropout must be in [0, 1), got {dropout}")
        if not 1 <= pool <= 6:
            raise BadInputError(f"alexnet: pool must be in 1..6, got {pool}")
        if not 16 <= fc_units <= 16384:
            raise BadInputError(f"alexnet: fc_units must be in 16..16384, got {fc_units}")
        self.dropout = float(dropout)
        self.pool = int(pool)
        self.fc_units = int(fc_units)

    def params(self) -> dict[str, Any]:
        return {"dropout": self.dropout, "pool": self.pool, "fc_units": self.fc_units}

    def create(self, num_outputs: int) -> BackboneNet:
        from torch import nn

        from harness.api import BackboneNet

        trunk = nn.Sequential(_features(), nn.AdaptiveAvgPool2d((self.pool, self.pool)),
                              nn.Flatten())
        head = nn.Sequential(
            nn.Linear(256 * self.pool ** 2, self.fc_units), nn.ReLU(inplace=True),
            nn.Dropout(self.dropout),
            nn.Linear(self.fc_units, self.fc_units), nn.ReLU(inplace=True),
            nn.Dropout(self.dropout),
            nn.Linear(self.fc_units, num_outputs),
        )
        net = BackboneNet(trunk, head, layers=_ALEXNET_BN_LAYERS)
        _init_deepcluster(net)
        return net


class TorchvisionAlexNet(Backbone):
    """torchvision's AlexNet (no batch normalisation), randomly initialised."""

    name = "alexnet_tv"
    description = "torchvision's plain AlexNet (no BatchNorm); head = fc6-fc8"

    def __init__(self, *, dropout: float = 0.5):
        if not 0.0 <= dropout < 1.0:
            raise BadInputError(f"alexnet_tv: dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)

    def params(self) -> dict[str, Any]:
        return {"dropout": self.dropout}

    def create(self, num_outputs: int) -> BackboneNet:
        from torch import nn
        from torchvision.models import alexnet

        from harness.api import BackboneNet

        model = alexnet(weights=None, num_classes=num_outputs, dropout=self.dropout)
        trunk = nn.Sequential(model.features, model.avgpool, nn.Flatten())
        return BackboneNet(trunk, nn.Sequential(*model.classifier), layers=_ALEXNET_TV_LAYERS)

