"""data/ingest_report.json: what ``cspine prepare`` read, skipped, merged and decided.

Part of ingestion. The report lists every skipped file with its reason code and detail, every exact
duplicate with the file it duplicates, ignored files and warnings (missing annotations, JSON sizes that
disagree with the image), the counts per split, and the fingerprint of inputs + config that lets a
re-run with the same config skip the work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from training.ingest.errors import REASONS

#: Bump when the cache contents would change for the same inputs and config.
INGEST_VERSION = "ingest-3"  # 3: folder case ids are digests of the patient, not positions


def fingerprint(data_cfg: Any, seed: int, files: list[Path], root: Path) -> str:
    """sha256 over the ingest version, the data config, the seed and each input's (path, size, mtime)."""
    h = hashlib.sha256()
    cfg = data_cfg.model_dump(mode="json")
    cfg.pop("phantom", None)  # the phantom's own manifest covers it; the files below change with it
    h.update(json.dumps({"version": INGEST_VERSION, "data": cfg, "seed": seed}, sort_keys=True).encode())
    for p in sorted(files):
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\x00{st.st_size}\x00{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def build_report(
    *,
    fingerprint: str,
    source: str,
    path: str,
    resolution: int,
    n_files: int,
    skipped: list[dict],
    duplicates: list[dict],
    ignored: list[str],
    warnings: list[dict],
    splits: dict[str, int],
    cases: dict[str, int],
    max_bad_fraction: float,
    seconds: float,
    status: str,
    extra: dict | None = None,
) -> dict:
    bad_fraction = len(skipped) / n_files if n_files else 0.0
    by_reason: dict[str, int] = {}
    for s in skipped:
        by_reason[s["reason"]] = by_reason.get(s["reason"], 0) + 1
    warn_counts: dict[str, int] = {}
    for w in warnings:
        warn_counts[w["warning"]] = warn_counts.get(w["warning"], 0) + 1
    return {
        "stage": "prepare",
        "version": INGEST_VERSION,
        "status": status,
        "fingerprint": fingerprint,
        "source": source,
        "path": path,
        "resolution": resolution,
        "counts": {
            "files": n_files,
            "ok": sum(splits.values()),
            "skipped": len(skipped),
            "duplicates": len(duplicates),
            "ignored": len(ignored),
            "train": splits.get("train", 0),
            "holdout": splits.get("holdout", 0),
            "cases": sum(cases.values()),
            "train_cases": cases.get("train", 0),
            "holdout_cases": cases.get("holdout", 0),
        },
        "bad_fraction": round(bad_fraction, 6),
        "max_bad_fraction": max_bad_fraction,
        "skipped_by_reason": by_reason,
        "reasons": {k: REASONS[k] for k in by_reason},
        "warnings_by_kind": warn_counts,
        "skipped": skipped,
        "duplicates": duplicates,
        "ignored": ignored,
        "warnings": warnings,
        "seconds": round(seconds, 2),
        **(extra or {}),
    }
