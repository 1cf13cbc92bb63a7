"""manifest.json of a release folder (every file with its sha256, size and, for Parquet, its row count)
and ``cspine verify``: check a folder against it and name each bad file."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from cspine import atomic
from cspine.hashing import sha256_file

MANIFEST = "manifest.json"


def build_manifest(folder: Path) -> dict:
    files = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if not p.is_file() or rel == MANIFEST or p.name.startswith(".tmp-") or "/.cache/" in f"/{rel}":
            continue
        entry = {"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        if p.suffix == ".parquet":
            entry["rows"] = pq.read_metadata(p).num_rows
        files.append(entry)
    rows = sum(f.get("rows", 0) for f in files)
    return {"files": files, "total_rows": rows, "total_bytes": sum(f["bytes"] for f in files)}


def write_manifest(folder: Path) -> dict:
    m = build_manifest(folder)
    atomic.write_json(folder / MANIFEST, m)
    return m


def verify(folder: Path) -> list[str]:
    """Problems found in ``folder`` against its manifest, one line per bad file; empty when it is sound."""
    import json

    folder = Path(folder)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        return [f"{mpath}: missing (not a release folder, or `cspine package` did not finish)"]
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        listed = {f["path"]: f for f in manifest["files"]}
    except (ValueError, KeyError, TypeError) as err:
        return [f"{mpath}: unreadable manifest ({err})"]
    problems = []
    for rel, f in listed.items():
        p = folder / rel
        if not p.is_file():
            problems.append(f"{p}: listed in the manifest but missing")
            continue
        if p.stat().st_size != f["bytes"]:
            problems.append(f"{p}: size {p.stat().st_size} != {f['bytes']} in the manifest")
            continue
        if sha256_file(p) != f["sha256"]:
            problems.append(f"{p}: sha256 differs from the manifest (corrupted or changed)")
            continue
        if "rows" in f:
            try:
                n = pq.read_metadata(p).num_rows
            except Exception as err:  # a corrupt footer is a bad file, whatever pyarrow raises
                problems.append(f"{p}: not a readable Parquet file ({err})")
                continue
            if n != f["rows"]:
                problems.append(f"{p}: {n} rows != {f['rows']} in the manifest")
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != MANIFEST and "/.cache/" not in f"/{rel}" and rel not in listed:
            why = "partial file from an interrupted run" if p.name.startswith(".tmp-") else "not in the manifest"
            problems.append(f"{p}: {why}")
    return problems
