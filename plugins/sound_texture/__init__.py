"""Built-in plugin ``sound_texture``: the 502 McDermott-Simoncelli texture statistics.

Modules: :mod:`.filters` (cochlear and modulation filterbanks, Octave's resampling kernel),
:mod:`.envelopes` (batched subband envelopes), :mod:`.statistics` (the 502 values),
:mod:`.representation` (the plugin class), :mod:`.baseline` (a plain single-clip
numpy/scipy version, the readable reference and the benchmark's baseline).
"""

from harness.api.hookspecs import hookimpl

from .representation import SoundTexture

__all__ = ["SoundTexture"]


@hookimpl
def harness_register_reprs(register):
    register(SoundTexture)
