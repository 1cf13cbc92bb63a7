"""Fixtures of the release tests: ``audited_run`` is the shared ``fake_run`` plus a small audit, eval and study
result written here by hand in the contract's format (the real audit is tested in tests/privacy; the gate is
read through privacy.gate when that module exists)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cspine import atomic
from cspine.images import write_png

EXCLUDED = "final-000003"


def write_audit(run, passed: bool = True, excluded: tuple[str, ...] = (EXCLUDED,)) -> None:
    run.audit.mkdir(parents=True, exist_ok=True)
    ids = pd.read_parquet(run.samples_table)["image_id"].tolist()
    rng = np.random.default_rng(0)
    flagged = [i in excluded for i in ids]
    pd.DataFrame({
        "image_id": ids,
        "pixel_nn_id": ["1000_0"] * len(ids),  # a training image id: must never be released
        "pixel_score": rng.random(len(ids)),
        "pixel_flag": flagged,
        "phash_nn_id": ["1001_0"] * len(ids),
        "phash_score": rng.integers(0, 64, len(ids)).astype(float),
        "phash_flag": flagged,
        "flagged": flagged,
        "excluded": flagged,
    }).to_parquet(run.audit / "audit.parquet", index=False)
    atomic.write_json(run.audit / "summary.json", {
        "passed": passed, "exclude_flagged": True, "n_samples": len(ids), "n_flagged": len(excluded),
        "excluded": list(excluded), "methods_run": ["pixel", "phash"],
        "reason": "audit passed" if passed else "2 images are closer to training images than the holdout threshold",
    })
    # A summary that names a training image and a source path: packaging must redact both.
    (run.audit / "summary.md").write_text(
        "### Closest pairs\n\n| synthetic | nearest training image | score |\n| --- | --- | --- |\n"
        f"| {EXCLUDED} | 1000_0 | 0.99 |\n\nsource fake/1000_0.png\n\n![nn](figures/nn_hist.png)\n"
    )
    write_png(run.audit / "figures" / "nn_hist.png", (rng.random((16, 16)) * 255).astype(np.uint8))


def write_eval_and_study(run) -> None:
    atomic.write_json(run.eval / "metrics.json", {"fid": 42.5, "kid": {"mean": 0.012, "std": 0.003}, "n_real": 12})
    (run.eval / "summary.md").write_text("| metric | value |\n| --- | --- |\n| FID | 42.5 |\n\n![curve](figures/fid_curve.png)\n")
    write_png(run.eval / "figures" / "fid_curve.png", np.zeros((8, 8), np.uint8))
    run.eval.mkdir(parents=True, exist_ok=True)
    run.study.mkdir(parents=True, exist_ok=True)
    (run.study / "summary.md").write_text("Readers told real from synthetic at 54% accuracy.\n\n![roc](figures/roc.png)\n")
    write_png(run.study / "figures" / "roc.png", np.zeros((8, 8), np.uint8))


@pytest.fixture()
def audited_run(fake_run):
    write_audit(fake_run)
    return fake_run


@pytest.fixture()
def demo_config():
    from tests.fakerun import REPO

    return REPO / "configs" / "demo.yaml"
