"""Image file helpers shared by the stages: 8/16-bit grayscale PNG in and out, and scaling to [0, 1].

Synthetic samples and the pixel cache are single-channel; 16-bit PNGs are written with Pillow's
``I;16`` mode, which round-trips exactly through ``numpy``.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from cspine import atomic


def to_unit(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 (or float already in [0, 1]) images of any shape to float32 in [0, 1]."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def from_unit(arr: np.ndarray, bit_depth: int = 16) -> np.ndarray:
    """float in [0, 1] to uint16 (bit_depth 16) or uint8 (bit_depth 8), rounded."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    top = 65535.0 if bit_depth == 16 else 255.0
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    return np.rint(np.clip(arr, 0.0, 1.0) * top).astype(dtype)


def png_bytes(arr: np.ndarray, *, compress_level: int | None = None, optimize: bool = False) -> bytes:
    """Encode a 2-D uint8 or uint16 array as a grayscale PNG (no metadata chunks): the one PNG encoder.

    ``compress_level``: zlib level 0-9 (None: Pillow's default, what samples/ and the grids use; 0: stored,
    so the file size says nothing about the image, as the reader study needs). ``optimize``: Pillow's
    search for the smallest file (the audit report's inline images)."""
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8/uint16 array, got {arr.dtype} {arr.shape}")
    opts = {} if compress_level is None else {"compress_level": compress_level}
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=optimize, **opts)
    return buf.getvalue()


def write_png(path: str | os.PathLike[str], arr: np.ndarray) -> None:
    """Write a 2-D uint8/uint16 array as a grayscale PNG, atomically."""
    atomic.write_bytes(path, png_bytes(arr))


def read_gray(path: str | os.PathLike[str] | io.BytesIO) -> np.ndarray:
    """Read a PNG/JPEG as a 2-D uint8 or uint16 array (RGB is converted to luminance, 8-bit)."""
    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L"):
            return np.array(im, dtype=np.uint16)
        if im.mode == "I":
            return np.clip(np.array(im), 0, 65535).astype(np.uint16)
        if im.mode != "L":
            im = im.convert("L")
        return np.array(im, dtype=np.uint8)


def resize_gray16(arr: np.ndarray, size: int) -> np.ndarray:
    """A 2-D uint16 image resized to ``size`` x ``size`` (bicubic, in float), rounded back to uint16."""
    im = Image.fromarray(arr.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.rint(np.clip(np.asarray(im), 0, 65535)).astype(np.uint16)
