"""One input file to pixels: read the bytes, check what they are, hand them to the right decoder.

Part of ingestion (``cspine prepare``). :func:`decode_file` is the only place that opens an input image;
it returns the sha256 of the bytes (for duplicate detection), the decoded float32 image in [0, 1] with
bone bright, the source size, and for DICOM an opaque patient grouping token. Every failure is a
:class:`~training.ingest.errors.BadFile` with a reason code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.ingest.dicom import read_dicom
from training.ingest.errors import BadFile
from training.ingest.raster import read_raster
from training.ingest.sniff import extension_kind, sniff


@dataclass
class Decoded:
    sha256: str
    pixels: np.ndarray  # float32 [H, W] in [0, 1], bone bright
    kind: str  # png | jpeg | dicom
    group: str | None = None  # opaque patient token (DICOM PatientID digest), never stored

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def read_bytes(path: Path) -> bytes:
    data = Path(path).read_bytes()
    if not data:
        raise BadFile("empty", "zero bytes")
    return data


def decode_bytes(data: bytes, name: str, max_pixels: int) -> Decoded:
    """Decode the bytes of a file called ``name`` (its extension is checked against its contents)."""
    digest = hashlib.sha256(data).hexdigest()
    kind = sniff(data[:132])
    promised = extension_kind(name)
    if kind is None and promised == "dicom":
        # DICOM without the 128-byte preamble still exists in the wild: let pydicom try
        pixels, group = read_dicom(data, max_pixels, force=True)
        return Decoded(digest, pixels, "dicom", group)
    if kind is None:
        raise BadFile("not_an_image", "contents are not PNG, JPEG or DICOM")
    if promised is not None and promised != kind:
        raise BadFile("wrong_extension", f"named {Path(name).suffix} but holds {kind.upper()} data")
    if kind == "dicom":
        pixels, group = read_dicom(data, max_pixels)
        return Decoded(digest, pixels, kind, group)
    return Decoded(digest, read_raster(data, max_pixels), kind)


def decode_file(path: str | Path, max_pixels: int) -> Decoded:
    """Read and decode one file; raises BadFile."""
    path = Path(path)
    try:
        data = read_bytes(path)
    except OSError as err:
        raise BadFile("unreadable_image", f"cannot read the file: {err}") from None
    return decode_bytes(data, path.name, max_pixels)
