"""One encoding for every image a rater sees, real or synthetic, so nothing but the pixels tells them apart.

Real images come from the pixel cache (data/pixels.npy, 16-bit) and synthetic ones from samples/ PNGs
(16-bit by default): both are scaled to [0, 1], resized to ``study.image_size`` with the same Lanczos
filter in float, given the study's common tone (reader_study.tone, ``study.tone: match``) or quantised
to 8 bits as they are (``as_is``), and written as a grayscale PNG with *no* ancillary chunks and *no*
compression (zlib level 0). Uncompressed, every served file of a study has the same byte
size, the same IHDR and the same chunk layout, so file size, dimensions, mode and metadata carry no
information about the source (a compressed PNG's size would follow the image's noise level, which
differs between the 16-bit cache and the model's output).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from cspine.images import png_bytes, to_unit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def resize_unit(arr: np.ndarray, size: int) -> np.ndarray:
    """A 2-D image (uint8/uint16 or float in [0, 1]) resized to size x size, float32 in [0, 1]."""
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    unit = to_unit(arr)
    im = Image.fromarray(unit.astype(np.float32), mode="F")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)


def encode_served(u8: np.ndarray) -> bytes:
    """The served file of 8-bit pixels: grayscale PNG, uncompressed, no metadata chunks."""
    return png_bytes(u8, compress_level=0)


def encode_png(arr: np.ndarray, size: int) -> bytes:
    """The served file of one image with its tone as it is (``study.tone: as_is``): resized, 8-bit."""
    return encode_served(np.rint(resize_unit(arr, size) * 255.0).astype(np.uint8))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG file, CRCs checked; raises ValueError on a malformed file."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    out, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        payload = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(ctype + payload) & 0xFFFFFFFF != crc:
            raise ValueError(f"PNG chunk {ctype!r} has a bad CRC")
        out.append((ctype, payload))
        pos += 12 + length
    return out


def chunk_layout(data: bytes) -> tuple:
    """What a PNG file says about itself apart from its pixels: chunk types with sizes, and the IHDR."""
    chunks = png_chunks(data)
    ihdr = next(p for t, p in chunks if t == b"IHDR")
    return tuple((t, len(p)) for t, p in chunks), ihdr
