"""data/ingest_report.json: what ``cspine prepare`` read, skipped, merged and decided.

Part of ingestion. The report lists every skipped file with its reason code and detail, every exact
duplicate with the file it duplicates, ignored files and warnings (missing annotations, JSON sizes that
disagree with the image) and the counts per split.
"""

from __future__ import annotations

from training.ingest.errors import REASONS

#: Bump when the cache contents would change for the same inputs and config.
INGEST_VERSION = "ingest-4"  # 4: square crop around the spine, no zero padding; 3: folder case ids are digests


def build_report(
    *,
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
