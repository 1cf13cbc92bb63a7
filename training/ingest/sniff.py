"""Which kind of image a file holds, from its first bytes, and which kind its extension promises.

Used by ``decode.py`` before any decoder runs, so a JPEG named ``.png`` or a PNG named ``.dcm`` is
reported as a wrong extension rather than as a confusing decoder error.
"""

from __future__ import annotations

from pathlib import Path

#: Extensions the pipeline reads, and the kind each promises. Files without an extension may be DICOM.
EXTENSION_KIND = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".dcm": "dicom", ".dicom": "dicom", ".dic": "dicom"}


def sniff(head: bytes) -> str | None:
    """"png", "jpeg" or "dicom" from a file's first 132+ bytes; None when none matches."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


def extension_kind(path: str | Path) -> str | None:
    """The kind the file name promises (None for no extension)."""
    return EXTENSION_KIND.get(Path(path).suffix.lower())


def is_candidate(path: str | Path) -> bool:
    """Whether a folder scan should try this file: a known image extension or no extension at all."""
    p = Path(path)
    return p.suffix.lower() in EXTENSION_KIND or p.suffix == ""
