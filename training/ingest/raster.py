"""PNG and JPEG radiographs (8 or 16 bits, gray or RGB) to float32 [0, 1], with Pillow.

Part of ingestion (``cspine prepare``): ``decode.py`` hands PNG/JPEG bytes here. The size is checked
against ``data.max_image_pixels`` from the header, before any pixel is decoded, so a decompression bomb
costs nothing; a truncated file fails on load (Pillow's LOAD_TRUNCATED_IMAGES stays off).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from training.ingest.errors import BadFile


def read_raster(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode PNG/JPEG bytes to a 2-D float32 array in [0, 1] (RGB to luminance)."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            if isinstance(err, UnidentifiedImageError):
                raise BadFile("unreadable_image", f"Pillow cannot identify it: {err}") from None
            raise BadFile("decompression_bomb", str(err)) from None
        except Exception as err:
            raise BadFile("unreadable_image", f"{type(err).__name__}: {err}") from None
        w, h = im.size
        if w * h > max_pixels:
            raise BadFile("decompression_bomb", f"{w}x{h} pixels > data.max_image_pixels={max_pixels}")
        try:
            im.load()
        except Exception as err:
            text = str(err).lower()
            code = "truncated" if ("truncat" in text or "broken data stream" in text or "end of file" in text) else "unreadable_image"
            raise BadFile(code, f"{type(err).__name__}: {err}") from None
    if im.format == "JPEG":
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0
    if mode == "I":  # Pillow's 32-bit mode, used for some 16-bit PNGs
        arr = np.asarray(im, dtype=np.int64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return np.clip(arr / top, 0, 1).astype(np.float32)
    if mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0, 1)
    if mode != "L":
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(bg, im.convert("RGBA"))
        im = im.convert("L")  # ITU-R 601 luminance
    return np.asarray(im, dtype=np.float32) / 255.0
