"""Image files decoded as they display: the pixels a user sees in a viewer, and the pixels ComfyUI's LoadImage gives.

ComfyUI's ``LoadImage`` (nodes.py) decodes a file with Pillow as: ``ImageOps.exif_transpose`` (phone
photos are stored sideways with an orientation tag), a 32-bit integer ``'I'`` image scaled by 1/255,
then ``convert("RGB")`` (palette, grayscale, CMYK converted; an alpha channel is dropped, not
composited: ComfyUI hands it out separately as a mask). The CLI and the library use exactly these
steps so that the same file gives the same pixels everywhere. One addition: 16-bit images that recent
Pillow opens as ``'I;16'`` (ComfyUI's test only knows ``'I'``, so it clips them to white) are first
widened to ``'I'`` and then scaled the same way.

Pillow and numpy are imported inside the functions so that importing this module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# 16-bit modes Pillow opens 16-bit PNG/TIFF files in; widened to 'I' before ComfyUI's 'I' step.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def open_image(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """Open and fully decode an image file (first frame of an animation); :class:`InputError` if unreadable."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    path = Path(path)
    image = None
    # A truncated file must be an error, not a picture padded with black, even where the host (ComfyUI)
    # allows truncated images for itself.
    allowed, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise InputError(f"the {what} {path} does not exist; check the path.") from None
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        if image is not None:
            image.close()
        reason = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot read the {what} {path} ({reason}); pass a complete png or jpg file.") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = allowed
    return image


def as_displayed_rgb(image: Image.Image) -> Image.Image:
    """``image`` upright and in RGB, by ComfyUI LoadImage's steps (see the module docstring)."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES:
        image = image.convert("I")
    if image.mode == "I":
        image = image.point(lambda value: value * (1 / 255))
    return image.convert("RGB")


def read_rgb_image(path: str | os.PathLike, note: Callable[[str], None] | None = None) -> np.ndarray:
    """An image file as ``[H, W, 3]`` float32 0..1 RGB, as it displays (EXIF orientation applied).

    ``note`` receives a line for each conversion a user may want to know about (rotation, 16-bit,
    dropped alpha).
    """
    import numpy as np

    image = open_image(path)
    if note is not None:
        for line in _conversion_notes(image, Path(path).name):
            note(line)
    return np.asarray(as_displayed_rgb(image), dtype=np.float32) / 255.0


def read_mask_image(path: str | os.PathLike) -> np.ndarray:
    """A mask image as ``[H, W]`` float32 0..1 (white = 1), decoded as it displays; alpha is ignored."""
    import numpy as np

    image = as_displayed_rgb(open_image(path, "mask"))
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _conversion_notes(image: Image.Image, name: str) -> list[str]:
    notes = []
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation tag
    if orientation not in (1, None):
        notes.append(f"note: {name} has an EXIF orientation ({orientation}); used it upright, as it displays")
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        notes.append(f"note: {name} is a {image.mode} (16/32-bit) image; scaled it to 8-bit RGB")
    elif "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        notes.append(
            f"note: {name} has transparency; its colours are used as stored, without the alpha "
            "(as ComfyUI's Load Image does)"
        )
    elif image.mode != "RGB":
        notes.append(f"note: {name} is a {image.mode} image; converted it to RGB")
    return notes
