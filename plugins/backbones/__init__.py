"""Built-in backbones: ``alexnet`` (the seed's AlexNet-BN), ``alexnet_tv``, ``resnet18``
and the ``timm:<name>`` family. All are randomly initialised; nothing is
downloaded (timm is imported only when a ``timm:`` backbone is asked for)."""

from harness.api.hookspecs import hookimpl
from harness_plugins.backbones.alexnet import AlexNetBN, TorchvisionAlexNet
from harness_plugins.backbones.resnet import ResNet18
from harness_plugins.backbones.timm_family import TimmBackbone

__all__ = ["AlexNetBN", "TorchvisionAlexNet", "ResNet18", "TimmBackbone"]


@hookimpl
def harness_register_backbones(register):
    for cls in (AlexNetBN, TorchvisionAlexNet, ResNet18, TimmBackbone):
        register(cls)
