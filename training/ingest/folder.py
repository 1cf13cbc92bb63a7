"""Any folder of DICOM/PNG/JPEG radiographs as a list of inputs and their patients (``data.source: folder``).

Part of ingestion (``cspine prepare``). Files with an image extension (.dcm/.dicom/.dic, .png, .jpg/.jpeg)
or none (DICOM often has none) are inputs, searched recursively; other files (.json, .txt, sheets) are
listed as ignored; hidden files and folders are left out.

How patients (cases) are found: :func:`folder_cases`, run after decoding because the DICOM PatientID is
only known then. For each kept file, in this order:

1. DICOM with a non-empty PatientID: that patient. The decoding worker turns the PatientID into a salted
   digest (``dicom.group_token``); the raw PatientID never leaves the worker.
2. Otherwise, a file in a sub-folder: the folder that holds it (its parent folder's path relative to
   ``data.path``, e.g. ``site1/p007``); one folder, one patient. Exception: when the DICOM files of that
   same folder carry exactly one PatientID, the folder's files without one (PNG exports, de-identified
   DICOM) join that patient, so a patient folder is not cut in two. A folder whose DICOM files carry
   several PatientIDs is not a patient folder; its files without a PatientID form one case of their own.
3. Otherwise (a file directly in ``data.path`` without a PatientID): the file is its own patient.

The PatientID wins over folders: the same PatientID in two folders is one case, so one patient is never
on both sides of the split. Folders are not merged upwards: ``p007/study1`` and ``p007/study2`` holding
PNGs are two cases; put each patient's images in one folder, or use DICOM with PatientIDs. A case's rule
depends only on its own files, so adding or removing other folders or files never changes it.

The case id written to ``index.parquet`` is ``case-`` + 16 hex digits of sha256 over a fixed tag and the
rule's key (the PatientID digest, the folder path or the file path), never a PatientID, folder or file
name. It is stable across runs and seeds. It is not a secret: whoever holds the index and a list of
candidate PatientIDs or folder names can test them, so the index stays in the private run folder (the
release leak scan treats case ids as private strings).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from training.ingest.csxa import Item
from training.ingest.errors import IngestError
from training.ingest.sniff import is_candidate

#: The rules of the module docstring, as counted in ingest_report.json ("cases_by_rule").
RULES = ("patient_id", "folder", "file")


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


def case_id_for(key: str) -> str:
    """The opaque case id of a patient key: ``case-`` + 16 hex digits of a tagged sha256."""
    return "case-" + hashlib.sha256(b"cspine-case-id\x00" + key.encode("utf-8")).hexdigest()[:16]


def patient_keys(rels: Sequence[str], tokens: Sequence[str | None]) -> list[tuple[str, str]]:
    """(rule, key) of each file from its relative path and its DICOM PatientID digest (None when absent).

    Pure in its inputs; the rules are the module docstring's. Keys hold folder and file names and stay in
    memory: only :func:`case_id_for` of a key is written.
    """
    if len(rels) != len(tokens):
        raise ValueError("one token per file")
    ids_in_folder: dict[str, set[str]] = {}
    for rel, tok in zip(rels, tokens):
        parent = PurePosixPath(rel).parent.as_posix()
        if tok and parent != ".":
            ids_in_folder.setdefault(parent, set()).add(tok)
    out = []
    for rel, tok in zip(rels, tokens):
        parent = PurePosixPath(rel).parent.as_posix()
        if tok:
            out.append(("patient_id", "pt:" + tok))
        elif parent == ".":
            out.append(("file", "file:" + rel))
        elif len(ids_in_folder.get(parent, ())) == 1:
            out.append(("patient_id", "pt:" + next(iter(ids_in_folder[parent]))))
        else:
            out.append(("folder", "dir:" + parent))
    return out


def folder_cases(rels: Sequence[str], tokens: Sequence[str | None]) -> tuple[list[str], dict[str, int]]:
    """The case id of each file and, for the report, how many cases each rule made.

    Also counts ``patient_ids_in_several_folders``: a large number there with few cases often means an
    anonymiser that wrote one constant PatientID into every file, which makes all images one patient.
    """
    keys = patient_keys(rels, tokens)
    rule_of = dict((k, r) for r, k in keys)
    counts = {r: sum(1 for v in rule_of.values() if v == r) for r in RULES}
    folders: dict[str, set[str]] = {}
    for rel, (_, key) in zip(rels, keys):
        if key.startswith("pt:"):
            folders.setdefault(key, set()).add(PurePosixPath(rel).parent.as_posix())
    counts["patient_ids_in_several_folders"] = sum(1 for f in folders.values() if len(f) > 1)
    return [case_id_for(k) for _, k in keys], counts
