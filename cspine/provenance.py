"""Provenance records: what each stage consumed and produced, and whether it is up to date.

Where it sits: the core, used by the stage table (``cspine.stages``) around every stage's run function; the
stages themselves only declare their inputs and outputs. Each stage writes ``STAGE/record.json``:

    {"stage": "sample", "complete": true, "config": {<its config sections>}, "versions": {...},
     "inputs": {<label>: <fingerprint>}, "outputs": {<label>: <fingerprint>}, "started": ..., "finished": ...}

A fingerprint is the sha256 of a file's bytes, or for a set of files a mapping {relative path: sha256}
(so the audit's record lists every sample image it covered, and release checks can look an image up); the
stage table computes them with cspine.rundata.
The one exception is a run's *source* folder (outside the run, possibly terabytes): it is fingerprinted by
relative path, size and modification time, as make and rsync do; everything inside the run by content.

A stage is **up to date** when its record is complete, its inputs and its config sections equal what they
are now, and its outputs still have the recorded bytes. Otherwise it re-runs: when its *inputs* changed (or
its outputs were altered, or a config key it cannot resume across changed) its folder is cleared first, so
nothing made from other inputs is ever reused; when only a resumable key changed (``train.max_steps``) it
resumes. The record is written twice: incomplete before the work starts (so an interrupted stage knows
what it was working from) and complete after it, with its outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from cspine import atomic

RECORD = "record.json"
#: Packages whose versions every record notes (what made the bytes).
VERSIONED = ("synthetic-cspine", "torch", "diffusers", "accelerate", "numpy", "pillow", "datasets", "imagehash")


def stat_fp(folder: Path) -> str:
    """Fingerprint of a source folder outside the run by (relative path, size, mtime) of every file."""
    folder = Path(folder)
    h = hashlib.sha256()
    if folder.is_dir():
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def digest(obj: Any) -> str:
    """sha256 of a JSON-able value (sorted keys): one short fingerprint for a mapping of fingerprints."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def read_record(folder: Path) -> dict | None:
    """The record in ``folder``, or None when there is none or it is unreadable (then the stage re-runs)."""
    path = Path(folder) / RECORD
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def write_record(folder: Path, stage: str, config: Mapping, inputs: Mapping, outputs: Mapping | None,
                 started: float | None = None, extra: Mapping | None = None) -> dict:
    """Write ``folder/record.json`` atomically; ``outputs=None`` writes the incomplete (started) record."""
    now = time.time()
    rec = {"stage": stage, "complete": outputs is not None, "config": dict(config), "versions": versions(),
           "inputs": dict(inputs), "outputs": dict(outputs or {}),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started or now)),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) if outputs is not None else None,
           "pid": os.getpid()}
    rec.update(extra or {})
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic.write_json(Path(folder) / RECORD, rec)
    return rec


def changed_keys(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings (added and removed keys included)."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        key = f"{prefix}{k}"
        if isinstance(a, Mapping) and isinstance(b, Mapping) and not _is_file_map(a, b):
            out += changed_keys(a, b, key + ".")
        elif a != b:
            out.append(key)
    return out


def _is_file_map(a: Mapping, b: Mapping) -> bool:
    """A {path: sha256} mapping is compared as one value (naming one of thousands of files helps nobody)."""
    vals = list(a.values())[:3] + list(b.values())[:3]
    return bool(vals) and all(isinstance(v, str) and len(v) == 64 for v in vals)


def describe_changes(keys: list[str], what: str, limit: int = 4) -> str:
    shown = ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
    return f"{what} changed: {shown}"
