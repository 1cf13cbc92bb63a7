"""Fixtures of the release tests: ``audited_run`` is the shared ``fake_run`` (hand-made data/, model/, samples/
with their provenance records) audited by the real `cspine audit` (the fast hash and pixel methods), after one
sample was replaced by a copy of a training image, which the audit flags and excludes. Eval and study summaries
stay hand-written (``write_eval_and_study``): the card tests need their text, not their statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cspine.cli import main as cspine
from cspine.images import write_png
from cspine.stages import load_config
from tests.fakerun import write_records

#: The sample replaced by a copy of a training image (the real audit must flag it).
PLANTED = "final-000003"
METHODS = "phash,dhash,pixel"


def plant_training_copy(run, image_id: str = PLANTED, train_row: int = 0) -> None:
    """Overwrite sample ``image_id`` with training image ``train_row`` (a memorised sample) and re-record the
    sample stage, as if the model had produced it."""
    idx = pd.read_parquet(run.index)
    row = int(idx[idx["split"] == "train"]["cache_row"].iloc[train_row])
    write_png(run.samples / f"images/{image_id}.png", np.load(run.pixels)[row])
    write_records(load_config(run.config), run, ("sample",))


def audit(run, *extra: str) -> int:
    return cspine(["audit", "--config", str(run.config), "--methods", METHODS, "--no-progress", *extra])


def audit_summary(run) -> dict:
    import json

    return json.loads(run.audit_summary.read_text())


def write_eval_and_study(run) -> None:
    """Hand-written eval and study summaries: one allow-listed figure each, and a figure of real images that
    must never be released (its name is not on the allowlist)."""
    from cspine import atomic

    rng = np.random.default_rng(0)
    run.eval.mkdir(parents=True, exist_ok=True)
    atomic.write_json(run.eval / "metrics.json", {"fid": 42.5, "kid": {"mean": 0.012, "std": 0.003}, "n_real": 12})
    (run.eval / "summary.md").write_text("| metric | value |\n| --- | --- |\n| FID | 42.5 |\n\n"
                                         "![curve](figures/checkpoint_curve.png)\n\n![examples](figures/examples.png)\n")
    write_png(run.eval / "figures" / "checkpoint_curve.png", (rng.random((16, 16)) * 255).astype(np.uint8))
    write_png(run.eval / "figures" / "examples.png", np.load(run.pixels)[0])  # real pixels: stays in the run
    run.study.mkdir(parents=True, exist_ok=True)
    (run.study / "summary.md").write_text("Readers told real from synthetic at 54% accuracy.\n\n"
                                          "![acc](figures/accuracy_per_rater.png)\n")
    write_png(run.study / "figures" / "accuracy_per_rater.png", (rng.random((16, 16)) * 255).astype(np.uint8))


@pytest.fixture()
def audited_run(fake_run):
    plant_training_copy(fake_run)
    assert audit(fake_run, "--exclude-flagged") == 0
    assert PLANTED in audit_summary(fake_run)["excluded"]
    return fake_run


@pytest.fixture()
def demo_config():
    from tests.fakerun import REPO

    return REPO / "configs" / "demo.yaml"
