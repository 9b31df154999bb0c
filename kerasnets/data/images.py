"""Decoding one image file, the same way everywhere: the in-memory folder reader, both
streaming pipelines, ``predict`` and ``evaluate``, and the checks made up front.

PIL only (imported when a file is opened): any colour mode becomes RGB (or L) by one
rule, resizing is bilinear, and every failure is one :class:`CorruptDatasetError` line
naming the file and what to do.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from kerasnets.data.errors import CorruptDatasetError, DatasetNotFoundError

__all__ = ["decode_image", "inspect_image", "open_image"]

# Errors PIL raises on a file that is not a (complete) image; UnidentifiedImageError
# is an OSError, a cut PNG chunk may surface as struct.error or EOFError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
# 16-bit grayscale modes: scaled to 8 bits (PIL's convert("L") would clip at 255).
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _bomb_error():
    from PIL import Image

    return Image.DecompressionBombError


def _pixel_limit_text(exc) -> str:
    """PIL's message (it names the image's pixels and the limit), and what to do."""
    return (f"{str(exc).rstrip('.')} (PIL refuses more than twice "
            f"PIL.Image.MAX_IMAGE_PIXELS): shrink the image, or raise "
            f"PIL.Image.MAX_IMAGE_PIXELS if you trust the file")


def _jpeg_is_complete(path: Path) -> bool:
    """Whether a JPEG file ends with its end-of-image marker (two bytes read): a cut file
    does not, and is then decoded up front to tell (a few valid files have trailing
    bytes; only those pay the decode)."""
    with open(path, "rb") as f:
        f.seek(-2, os.SEEK_END)
        return f.read(2) == b"\xff\xd9"


def inspect_image(path: Path):
    """``((height, width), None)`` for a usable image, ``(None, what is wrong)`` else.

    Reads the header and checks what can be checked without decoding: empty file,
    unknown format, PIL's ``verify()`` (a PNG's chunk checksums), a decompression bomb,
    a JPEG without its end marker (then decoded, to be sure).
    """
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes): not an image"
        with Image.open(path) as img:
            size, kind = (img.size[1], img.size[0]), img.format
            try:
                img.verify()  # (the image is unusable after it: nothing more is read)
            except _DECODE_ERRORS as exc:
                return None, f"cannot be decoded ({exc}): damaged or truncated"
        try:
            if kind == "JPEG" and not _jpeg_is_complete(path):
                decode_image(path)
        except CorruptDatasetError as exc:
            return None, str(exc).removeprefix(f"{path}: ")
        except _DECODE_ERRORS as exc:
            return None, f"cannot be decoded ({exc}): damaged or truncated"
    except _bomb_error() as exc:  # not an OSError
        return None, f"too large: {_pixel_limit_text(exc)}"
    except _DECODE_ERRORS as exc:
        return None, f"cannot be read as an image ({exc})"
    return size, None


def _eight_bit(img):
    """16-bit grayscale scaled to 8 bits (``convert("L")`` would clip at 255); a palette
    image to RGBA (its transparency kept until the alpha is dropped)."""
    from PIL import Image

    if img.mode in _HIGH_DEPTH_MODES:
        high = np.asarray(img).astype(np.uint32) >> 8
        return Image.fromarray(np.clip(high, 0, 255).astype(np.uint8), "L")
    return img.convert("RGBA") if img.mode == "P" else img


def open_image(path, color_mode: str = "rgb", target_size=None):
    """One image file, decoded (PIL; any colour mode to RGB, or L for ``"grayscale"``:
    16-bit scaled, alpha dropped; bilinear resize to ``target_size`` = ``(height, width)``
    if given), or one clear error naming it.

    Raises:
        DatasetNotFoundError: no such file.
        CorruptDatasetError: a directory, not an image, truncated or damaged, or over
            PIL's decompression-bomb limit (the message says which, and what to do).
    """
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        raise CorruptDatasetError(f"{path} is a directory, not an image file: pass the "
                                  f"image files (e.g. {path / '*.jpg'})")
    if not path.exists():
        raise DatasetNotFoundError(f"No image file {path}")
    target = "L" if color_mode == "grayscale" else "RGB"
    try:
        with Image.open(path) as raw:
            raw.load()  # decoded here, so that a truncated file fails here
            img = _eight_bit(raw)
        if img.mode not in ("L", target):  # CMYK, RGBA...: alpha dropped (torchvision's way)
            img = img.convert(target)
        if target_size is not None and img.size != (target_size[1], target_size[0]):
            img = img.resize((target_size[1], target_size[0]), Image.BILINEAR)
        if img.mode != target:  # grayscale to RGB after resizing: the same pixels as
            img = img.convert(target)  # before it (tested), a third of the work
    except _bomb_error() as exc:
        raise CorruptDatasetError(f"{path}: too large: {_pixel_limit_text(exc)}") from None
    except _DECODE_ERRORS as exc:
        raise CorruptDatasetError(f"{path}: cannot be decoded ({exc}): not an image, or "
                                  f"damaged or truncated") from None
    return img


def decode_image(path, image_size=None) -> np.ndarray:
    """One image file as ``uint8`` RGB ``(height, width, 3)``, resized to ``image_size``:
    the one decoder of the in-memory reader and of both streaming pipelines."""
    return np.asarray(open_image(path, "rgb", image_size))
