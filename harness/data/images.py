"""Reading images: every frame and VOC image the harness decodes goes through here.

:func:`load_rgb` returns an 8-bit RGB PIL image, whatever the file holds:

* 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``RGBA``, ``LA``, ``CMYK``, ``YCbCr``, ...)
  are converted by PIL's own ``convert("RGB")`` (an alpha channel is dropped, a palette
  looked up), so such a file reads exactly as it always has.
* High-depth grey images are scaled, never clipped, to 0..255:

  - 16-bit modes (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``; a 16-bit grey PNG or TIFF)
    map 0..65535 linearly onto 0..255 (``round(v * 255 / 65535)``);
  - 32-bit integer images (mode ``I``) are read as 16-bit samples the same way, and
    refused if a value lies outside 0..65535 (their range is then unknown);
  - 32-bit float images (mode ``F``) are read on the range 0.0..1.0
    (``round(v * 255)``), and refused if a value lies outside it or is NaN.

  (PIL itself reads 16-bit RGB and RGBA PNGs as 8-bit by keeping each sample's high
  byte, which is a scaling too.)

Every failure is a :class:`harness.api.errors.BadInputError` whose message starts with the
file's path: missing, a symlink loop, unreadable or truncated, a colour mode with no RGB
conversion, out-of-range samples, or more pixels than PIL's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``; such a file is refused before it is decoded).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np

from harness.api.errors import BadInputError

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: the top of the 16-bit sample range, mapped onto 255
MAX_16BIT = 65535


@contextmanager
def open_image(path: str | os.PathLike, what: str = "image") -> Iterator["PILImage.Image"]:
    """The PIL image at ``path``, opened lazily (decoded on first access) and closed on exit.

    An image with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` is refused here, before
    anything is decoded; so are unreadable files. ``what`` names the file's role in the
    error message ("frame image", "image").
    """
    from PIL import Image, UnidentifiedImageError

    _refuse_bomb_warnings()
    limit = Image.MAX_IMAGE_PIXELS
    try:
        img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(f"{path}: too many pixels for a {what}, more than "
                            f"PIL.Image.MAX_IMAGE_PIXELS = {limit} (PIL: {exc})") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot read {what} ({exc})") from None
    with img:
        if limit and img.width * img.height > limit:   # where a warning filter let it pass
            raise BadInputError(f"{path}: too many pixels for a {what}, {img.width} x "
                                f"{img.height}, more than PIL.Image.MAX_IMAGE_PIXELS = {limit}")
        yield img


def _refuse_bomb_warnings() -> None:
    """Make PIL's DecompressionBombWarning an exception, so that Image.open refuses an image
    over the pixel limit at once, silently (PIL only warns up to twice the limit).

    Checked on every call because a test runner or caller may reset the warning filters;
    the filter is added only when it is not already first, so the list does not grow.
    """
    from PIL import Image

    wanted = ("error", None, Image.DecompressionBombWarning, None, 0)
    if not warnings.filters or warnings.filters[0] != wanted:
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def image_size(path: str | os.PathLike, what: str = "image") -> tuple[int, int]:
    """(height, width) of the image at ``path``, read from its header (nothing is decoded)."""
    with open_image(path, what) as img:
        return img.height, img.width


def load_rgb(path: str | os.PathLike, what: str = "image") -> "PILImage.Image":
    """The image at ``path`` as an 8-bit RGB PIL image (see the module docstring)."""
    with open_image(path, what) as img:
        try:
            return to_rgb(img, path)
        except (OSError, ValueError) as exc:  # truncated or corrupt data, found on decoding
            raise BadInputError(f"{path}: cannot read {what} ({exc})") from None


def to_rgb(img: "PILImage.Image", path: str | os.PathLike) -> "PILImage.Image":
    """``img`` converted to 8-bit RGB: high-depth grey scaled onto 0..255, never clipped."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(img).astype(np.int64)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > MAX_16BIT):
            raise BadInputError(f"{path}: 32-bit integer image with values in "
                                f"[{values.min()}, {values.max()}]; only 0..{MAX_16BIT} "
                                "(16-bit samples) can be converted to 8-bit RGB")
        # round(v * 255 / 65535) = round(v / 257), in integers: (v + 128) // 257
        grey = ((values + 128) // 257).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.all() or (values.size and (values.min() < 0.0 or values.max() > 1.0)):
            shown = (f"[{values[finite].min():g}, {values[finite].max():g}]"
                     if finite.any() else "no finite values")
            raise BadInputError(f"{path}: float image with values {shown}"
                                f"{'' if finite.all() else ' and NaN/Inf'}; float images "
                                "are read on the range 0.0..1.0")
        grey = np.rint(values * 255.0).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:  # a mode PIL cannot convert to RGB (e.g. LAB)
        raise BadInputError(f"{path}: colour mode {mode!r} cannot be converted to RGB "
                            f"({exc})") from None
