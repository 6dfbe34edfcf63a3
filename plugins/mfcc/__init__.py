"""Built-in plugin ``mfcc``: librosa MFCCs of the 3.75 s window (20 x 155 = 3,100 values).

:mod:`.representation` holds the plugin class and explains the frame count;
:mod:`.torch_mfcc` is the same pipeline in torch, used on a GPU.
"""

from harness.api.hookspecs import hookimpl

from .representation import Mfcc, MfccConfig

__all__ = ["Mfcc", "MfccConfig"]


@hookimpl
def harness_register_reprs(register):
    register(Mfcc)
