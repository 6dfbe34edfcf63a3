"""``timm:<name>``: any architecture of the timm library, randomly initialised.

The trunk is the timm model with its classifier removed (``num_classes=0``), which by
timm's contract returns pooled features [B, F]; the head is one new linear layer. Input
size and normalisation come from the model's default configuration in timm (nothing is
downloaded: ``pretrained=False`` always). Models with a fixed input size (ViTs) take
``img_size``.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated, Any

from harness.api.errors import PluginError
from harness.api.interfaces import Backbone, Bounds

if TYPE_CHECKING:  # torch is imported when a network is built, so listing plugins needs none
    from torch import nn

    from harness.api import BackboneNet


class TimmBackbone(Backbone):
    """Any timm architecture by name (``timm:resnet50``, ``timm:vit_small_patch16_224``)."""

    name = "timm:"
    description = "any timm architecture, e.g. timm:resnet50 (random init); head = a new final layer"
    #: a tiny variant for the conformance checks of harness.api.testing
    test_params = {"variant": "test_resnet"}

    def __init__(self, *, variant: str = "resnet18",
                 img_size: Annotated[int, Bounds(8, 8192)] | None = None,
                 drop_rate: Annotated[float, Bounds(0.0, 1.0)] = 0.0):
        import timm

        if not timm.is_model(variant):
            close = difflib.get_close_matches(variant, timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise PluginError(f"timm has no model {variant!r}{hint}")
        self.variant = variant
        self.img_size = None if img_size is None else int(img_size)
        self.drop_rate = float(drop_rate)
        cfg = timm.get_pretrained_cfg(variant)
        if cfg is not None:
            self.input_size = int(cfg.input_size[-1])
            self.mean = tuple(float(m) for m in cfg.mean)
            self.std = tuple(float(s) for s in cfg.std)
        if self.img_size is not None:
            self.input_size = self.img_size

    def params(self) -> dict[str, Any]:
        return {"variant": self.variant, "img_size": self.img_size, "drop_rate": self.drop_rate}

    def create(self, num_outputs: int) -> BackboneNet:
        import timm
        from torch import nn

        from harness.api import BackboneNet

        extra = {} if self.img_size is None else {"img_size": self.img_size}
        trunk = timm.create_model(self.variant, pretrained=False, num_classes=0,
                                  drop_rate=self.drop_rate, **extra)
        features = getattr(trunk, "head_hidden_size", None) or trunk.num_features
        return BackboneNet(trunk, nn.Sequential(nn.Linear(features, num_outputs)),
                           layers=_feature_stages(trunk))


def _feature_stages(trunk: nn.Module) -> dict[str, str]:
    """``stage<i>`` for each feature stage timm declares (``feature_info``), then ``pooled``."""
    modules = dict(trunk.named_modules())
    layers = {}
    for i, info in enumerate(getattr(trunk, "feature_info", None) or []):
        module = info.get("module") if isinstance(info, dict) else None
        if module and module in modules:
            layers[f"stage{i}"] = f"trunk.{module}"
    layers["pooled"] = "trunk"
    return layers
