"""Any folder of DICOM/PNG/JPEG radiographs as a list of inputs (``data.source: folder``).

Part of ingestion (``cspine prepare``). Files with an image extension (.dcm/.dicom/.dic, .png, .jpg/.jpeg)
or none (DICOM often has none) are inputs, searched recursively; other files (.json, .txt, sheets) are
listed as ignored. The case of an image is decided after decoding (``prepare.assign_cases``): the first
sub-folder under the data folder when images sit in per-patient folders, else the DICOM patient (an
opaque digest of PatientID), else the file itself.
"""

from __future__ import annotations

from pathlib import Path

from training.ingest.csxa import Item
from training.ingest.errors import IngestError
from training.ingest.sniff import is_candidate


def image_id_for(rel: str) -> str:
    """A readable unique id from a relative path: the path without its extension, '/' as '__'."""
    p = Path(rel)
    return p.with_suffix("").as_posix().replace("/", "__") if p.suffix else p.as_posix().replace("/", "__")


def list_folder(root: str | Path) -> tuple[list[Item], list[str]]:
    """Input images under ``root`` (sorted) and the relative paths of ignored files."""
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"data.path {root} is not a folder")
    items, ignored = [], []
    used: set[str] = set()
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        rel = p.relative_to(root).as_posix()
        if not is_candidate(p):
            ignored.append(rel)
            continue
        image_id = image_id_for(rel)
        if image_id in used:
            image_id = f"{image_id}_{p.suffix.lstrip('.').lower()}"
        used.add(image_id)
        items.append(Item(path=p, rel=rel, image_id=image_id, case_id=None))
    return items, ignored
