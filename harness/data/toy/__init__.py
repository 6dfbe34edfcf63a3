"""The toy audio-visual world: the embedded default dataset.

Scenes with ambient sound textures and 20 object classes (named after VOC's) that look
like a shape in a colour and sound like a characteristic tone, chirp, click train or
hiss. :func:`generate_clips` writes a clip dataset; :func:`generate_voc` writes a toy
VOC2007 in the real layout, so the real readers (:mod:`harness.data.clips`, :mod:`harness.data.voc`)
are what read it. Parameters live in :class:`ToyConfig`; its :data:`PRESETS` name the oracle
world (sound names the objects) and a realistic one (the audio of real video), which
draw the same pictures (docs/toy-worlds.md).
"""

from harness.data.toy.config import PRESETS, ToyConfig
from harness.data.toy.generate import WORLD_VERSION, generate_clips, generate_voc

__all__ = ["PRESETS", "ToyConfig", "WORLD_VERSION", "generate_clips", "generate_voc"]
