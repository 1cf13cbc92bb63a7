"""Is what ships exactly what the privacy audit covered? Checked by `cspine package` before it writes the
manifest and again by `cspine publish` before anything leaves the run, without trusting that package ran.

The audit's record (audit/record.json, read through cspine.rundata.audit_coverage) lists the sha256 of every
sample image it audited and of the weights those samples came from. A release passes when:

- the audit's gate is open (privacy summary: passed, possibly after excluding flagged images);
- every image in every Parquet shard of release/dataset has the sha256 of an audited sample image that the
  audit did not flag (images go into the shards byte for byte, release.shards), under that image's id;
- every file of release/model/unet and release/model/scheduler has the sha256 the audit recorded for the
  "final" weights, i.e. the released model is the model whose samples were audited.

Anything else is a :class:`~cspine.errors.GateClosed` naming what differs (exit code 1).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq

from cspine.errors import GateClosed
from cspine.gate import read_gate
from cspine.hashing import sha256_file
from cspine.rundata import Coverage, audit_coverage
from cspine.rundir import RunDir


def image_problems(dataset: Path, cov: Coverage, excluded: set[str]) -> list[str]:
    """Images of the shards under ``dataset`` that the audit did not cover, or excluded. (An open gate has
    excluded every image it flagged: a strict pass flagged none.)"""
    problems = []
    shards = sorted((dataset / "data").glob("*.parquet"))
    if not shards:
        return [f"{dataset / 'data'}: no Parquet shards"]
    for shard in shards:
        t = pq.read_table(shard, columns=["image_id", "image"])
        for iid, img in zip(t.column("image_id").to_pylist(), t.column("image").to_pylist()):
            sha = hashlib.sha256(img["bytes"]).hexdigest()
            audited = cov.images.get(f"images/{iid}.png")
            if audited is None:
                problems.append(f"{shard.name}: image {iid} was not audited")
            elif audited != sha:
                problems.append(f"{shard.name}: image {iid} differs from the audited image (sha256 {sha[:12]} "
                                f"!= {audited[:12]})")
            elif iid in excluded:
                problems.append(f"{shard.name}: image {iid} was flagged by the audit")
    return problems


def weights_problems(model: Path, cov: Coverage) -> list[str]:
    """Files of the released pipeline's U-Net and scheduler that are not the audited "final" weights."""
    audited = cov.weights.get("final")
    if not audited:
        return [f"{cov.record}: the audit covered no samples of the final weights, so no released model was audited"]
    problems = []
    released = {f"{p.parent.name}/{p.name}": p for sub in ("unet", "scheduler") for p in sorted((model / sub).glob("*"))
                if p.is_file()}
    for rel in sorted(set(audited) | set(released)):
        if rel not in released:
            problems.append(f"{model / rel}: missing (the audited weights have it)")
        elif rel not in audited:
            problems.append(f"{model / rel}: not part of the audited weights")
        elif sha256_file(released[rel]) != audited[rel]:
            problems.append(f"{model / rel}: differs from the weights whose samples were audited")
    return problems


def check_release(run: RunDir, dataset: Path | None = None, model: Path | None = None) -> Coverage:
    """Raise GateClosed unless the release folders hold only audited, unflagged images and the audited weights."""
    dataset = dataset or run.release_dataset
    model = model or run.release_model
    cov = audit_coverage(run)
    if cov is None:
        raise GateClosed(f"{run.audit}: no finished audit record: run `cspine audit` before releasing")
    gate = read_gate(run)
    if not gate.passed:
        raise GateClosed(f"the release gate is closed: {gate.reason}")
    problems = image_problems(dataset, cov, set(gate.excluded)) + weights_problems(model, cov)
    if problems:
        more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise GateClosed("the release is not what the privacy audit covered; nothing was released:\n  "
                         + "\n  ".join(problems[:8]) + more)
    return cov


def real_image_hits(run: RunDir, folders: list[Path]) -> list:
    """Real training or holdout images found in ``folders`` by the release scan (release.realscan)."""
    from release import realscan

    index = realscan.RealIndex(realscan.read_real(run))
    return [hit for folder in folders if Path(folder).is_dir() for hit in realscan.scan_folder(folder, index).hits]
