"""torchvision's ResNet-18, randomly initialised: the trunk is everything up to the global pool.

The head is only the final fully connected layer (the paper's "Head" for ResNet), so the
trunk ends in torchvision's average pool and a flatten: [B, 3, H, W] -> [B, 512]. Any
input of 32 px or more works. Deeper ResNets are available as ``timm:resnet50`` etc.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from harness.api.interfaces import Backbone

if TYPE_CHECKING:  # torch is imported when a network is built, so listing plugins needs none
    from harness.api import BackboneNet

_TRUNK_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")


class ResNet18(Backbone):
    """torchvision ResNet-18; head = the final layer."""

    name = "resnet18"
    description = "torchvision ResNet-18 (random init); head = the final fully connected layer"

    def __init__(self, *, zero_init_residual: bool = False):
        self.zero_init_residual = bool(zero_init_residual)

    def params(self) -> dict[str, Any]:
        return {"zero_init_residual": self.zero_init_residual}

    def create(self, num_outputs: int) -> BackboneNet:
        from torch import nn
        from torchvision.models import resnet18

        from harness.api import BackboneNet

        model = resnet18(weights=None, num_classes=num_outputs,
                         zero_init_residual=self.zero_init_residual)
        trunk = nn.Sequential(OrderedDict([(part, getattr(model, part)) for part in _TRUNK_PARTS]
                                          + [("flatten", nn.Flatten())]))
        layers = {f"stage{i}": f"trunk.layer{i}" for i in range(1, 5)}
        layers["pooled"] = "trunk"
        return BackboneNet(trunk, nn.Sequential(model.fc), layers=layers)
