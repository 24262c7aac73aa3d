"""Image files read defensively, for ``predict``, ``reconstruct`` and ``inspect``.

    read_image(path, size) -> uint8 host array (3, size, size), RGB, resized (bicubic)
    unique_stems(paths)    -> one output stem per input, "x", "x-2", ... when two share one

What an image file may do and what happens:
* declare more than MAX_IMAGE_PIXELS pixels (a decompression bomb: a 110 KB PNG can declare
  30000 x 30000): refused before it is decoded, with the way to raise the limit
  (MINIVIT_MAX_IMAGE_PIXELS=N, the environment variable this module reads);
* hold 16-bit, 32-bit integer or floating-point pixels (mode I;16, I, F): scaled to 8 bits
  (16-bit: 0..65535 -> 0..255; 32-bit: 0..65535 as 16-bit, else 0..2^31-1; float: 0..1 when
  every value is in [0, 1], else taken as 0..255), never clipped to white;
* be damaged, truncated or not an image at all: one line naming the file.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from minivit.backend import host_xp
from minivit.console import shown
from minivit.errors import UserError
from minivit.install import install_hint

MAX_IMAGE_PIXELS = 89_478_485            # Pillow's own warning limit (about 9459 x 9459)
PIXELS_VAR = "MINIVIT_MAX_IMAGE_PIXELS"
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def max_image_pixels() -> int:
    """MAX_IMAGE_PIXELS, or $MINIVIT_MAX_IMAGE_PIXELS (a positive integer)."""
    text = os.environ.get(PIXELS_VAR)
    if text is None:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{PIXELS_VAR} must be a positive integer, got {text!r}")
    return value


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise UserError(f"reading images needs Pillow: {install_hint('viz')}") from None
    return Image


def to_rgb8(img, path):
    """A PIL image in any mode -> uint8 host array (H, W, 3)."""
    np = host_xp()
    if img.mode not in WIDE_MODES:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    a = np.asarray(img)
    if img.mode == "F":
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise UserError(f"image {shown(path)} holds NaN or infinite pixel values")
        scale = 255.0 if a.size and a.min() >= 0 and a.max() <= 1 else 1.0
    else:
        a = a.astype(np.int64)
        full = 65535 if img.mode != "I" or (a.size and a.min() >= 0 and a.max() <= 65535) \
            else 2**31 - 1
        scale = 255.0 / full
    gray = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def read_image(path, size: int):
    """An image file -> uint8 host array (3, size, size), RGB, resized (bicubic); a note on
    stderr when the image is smaller than size x size.  UserError naming the file when it
    is missing, not an image, damaged, or larger than max_image_pixels()."""
    Image = _pillow()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {shown(path)} not found")
    limit = max_image_pixels()
    previous = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = limit
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                rgb = to_rgb8(img, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"image {shown(path)} declares more than {limit:,} pixels (a "
                        f"decompression bomb?); if it is genuine, set {PIXELS_VAR} to a larger "
                        "number") from None
    except UserError:
        raise
    except Exception as e:          # Pillow raises OSError, ValueError, SyntaxError, EOFError..
        raise UserError(f"cannot read image {shown(path)}: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    if w < size or h < size:
        print(f"minivit: note: {shown(path)} is {w}x{h}, enlarged to the model's {size}x{size}",
              file=sys.stderr)
    img = Image.fromarray(rgb, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    return host_xp().asarray(img, dtype="uint8").transpose(2, 0, 1)


def unique_stems(paths) -> list[str]:
    """The stem of each path, with -2, -3, ... added where an earlier one has it already
    (a/x.png and b/x.png -> x, x-2)."""
    taken, stems = set(), []
    for p in paths:
        stem, n = Path(p).stem, 2
        name = stem
        while name in taken:
            name, n = f"{stem}-{n}", n + 1
        taken.add(name)
        stems.append(name)
    return stems


__all__ = ["MAX_IMAGE_PIXELS", "PIXELS_VAR", "max_image_pixels", "read_image", "to_rgb8",
           "unique_stems"]
