"""DICOM radiographs to display-ready grayscale, with pydicom 3.

Part of ingestion (``cspine prepare``): ``decode.py`` hands DICOM bytes here. The steps are the ones a
viewer applies: decode the pixel data (JPEG 2000 and other compressed syntaxes through the pylibjpeg
plugins), the modality LUT or rescale slope/intercept (``pydicom.pixels.apply_modality_lut``), the VOI
LUT or window centre/width (``apply_voi_lut``), then scaling to [0, 1] over the VOI output range and
inverting MONOCHROME1 so bone is bright. Nothing from the header except what the pixels need is kept;
the patient id is only turned into an opaque grouping token that never leaves the process.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from training.ingest.errors import BadFile


def _voi_range(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """Output range of the VOI step (PS3.3 C.11.2), as pydicom's apply_voi_lut produces it."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        bits = int(ds.BitsStored)
        if ds.get("ModalityLUTSequence"):
            lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
        elif int(ds.PixelRepresentation) == 0:
            lo, hi = 0.0, float(2**bits - 1)
        else:
            lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
        slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        if slope is not None and intercept is not None:
            lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
        return lo, hi
    return None


def group_token(ds: pydicom.Dataset) -> str | None:
    """An opaque token grouping images of one patient (a salted digest of PatientID), or None."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if not pid:
        return None
    return hashlib.sha256(b"cspine-case\x00" + pid.encode("utf-8", "replace")).hexdigest()[:16]


def read_dicom(data: bytes, max_pixels: int, force: bool = False) -> tuple[np.ndarray, str | None]:
    """Decode one DICOM file's bytes to float32 [0, 1] (bone bright) and its grouping token.

    Raises :class:`BadFile` with code ``unreadable_dicom``, ``truncated``, ``decompression_bomb`` or
    ``unsupported``.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except InvalidDicomError as err:
        raise BadFile("unreadable_dicom", f"not a DICOM file: {err}") from None
    except (EOFError, OSError) as err:
        raise BadFile("truncated", f"DICOM header ends early: {err}") from None
    except Exception as err:  # pydicom raises many kinds on corrupt headers
        raise BadFile("unreadable_dicom", f"{type(err).__name__}: {err}") from None
    if "PixelData" not in ds:
        raise BadFile("unreadable_dicom", "no pixel data (not an image object)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as err:
        raise BadFile("unreadable_dicom", f"missing image size: {err}") from None
    if rows * cols * frames > max_pixels:
        raise BadFile("decompression_bomb", f"{cols}x{rows}x{frames} pixels > data.max_image_pixels={max_pixels}")
    try:
        arr = ds.pixel_array
    except Exception as err:
        text = str(err).lower()
        short = ("less than expected", "length", "truncat", "end of", "eof")
        code = "truncated" if any(k in text for k in short) else "unreadable_dicom"
        raise BadFile(code, f"pixel data cannot be decoded: {type(err).__name__}: {err}") from None
    if frames > 1:
        arr = arr[0]  # a multi-frame radiograph: the first frame
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3:  # colour (pydicom converts YBR to RGB): luminance, no LUTs apply
        if arr.shape[-1] not in (3, 4):
            raise BadFile("unsupported", f"pixel array of shape {arr.shape}")
        rgb = arr[..., :3].astype(np.float64)
        gray = rgb @ np.array([0.299, 0.587, 0.114])
        top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        return np.clip(gray / top, 0, 1).astype(np.float32), group_token(ds)
    if arr.ndim != 2:
        raise BadFile("unsupported", f"pixel array of shape {arr.shape}")

    values = apply_modality_lut(arr, ds)
    voi = _voi_range(ds)
    if voi is not None:
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
        lo, hi = voi
    else:  # no VOI in the header: a robust full-range window
        lo, hi = (float(v) for v in np.percentile(values, [0.1, 99.9]))
    out = (np.asarray(values, dtype=np.float64) - lo) / max(hi - lo, 1e-9)
    out = np.clip(out, 0.0, 1.0)
    if photometric == "MONOCHROME1":  # low values are white: invert so bone is bright
        out = 1.0 - out
    return out.astype(np.float32), group_token(ds)
