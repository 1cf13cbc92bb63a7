"""A model that memorises its training images must not be released: neither its samples nor its weights.

The real chain through the `cspine` command: phantom radiographs (demo-data) -> prepare (32 px; 4 training
patients, the rest held out for calibration) -> train a tiny U-Net that predicts the clean image ("sample"
prediction) at a high learning rate for many steps on those 4 images, until it reproduces them -> sample ->
audit -> package. The audit flags most samples; the strict gate fails (exit 1); with --exclude-flagged the
flag-rate ceiling closes it all the same (exit 1, summary says why); `cspine package` refuses and writes
nothing to release/. The measured flag rate is printed.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from cspine.gate import read_gate
from cspine.cli import main as cspine
from tests.fakerun import REPO

SETTINGS = {
    "data.phantom.count": 48, "data.phantom.cases": 48, "data.phantom.height": 128, "data.phantom.width": 100,
    "data.resolution": 32, "data.holdout_fraction": 0.85,
    "model.block_out_channels": "[16,32]", "model.down_block_types": "[DownBlock2D,DownBlock2D]",
    "model.up_block_types": "[UpBlock2D,UpBlock2D]", "model.norm_num_groups": 8, "model.prediction_type": "sample",
    # unconditional: a layout-conditional model draws new layouts from its shape model, so even when it has
    # memorised 4 images only some samples come out as copies (5 of 16 flagged, measured)
    "model.condition.curvature": "false", "model.condition.keypoints": "false",
    "train.batch_size": 8, "train.max_steps": 1500, "train.warmup_steps": 20, "train.learning_rate": 0.005,
    "train.lr_schedule": "constant_with_warmup", "train.mixed_precision": '"no"', "train.checkpoint_every": 100000,
    "train.sample_every": 100000, "train.grid_images": 4, "train.grid_steps": 2, "train.ema.decay": 0.995,
    # two threads: 89 s of training here instead of 105 s on one (10 of 16 samples flagged); 1000 steps instead
    # of 1500 memorise too little for the test's assertions (measured: it fails)
    "train.num_threads": 2,
    "sample.num_images": 16, "sample.batch_size": 16, "sample.scheduler": "ddim", "sample.steps": 20,
    "sample.shard_size": 16,
    "audit.methods": "[pixel,phash,dhash]",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_memorising_model_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--config", str(REPO / "configs" / "demo.yaml"), "--run-dir", str(run),
              "--set", f"data.path={tmp_path / 'raw'}"]
    for k, v in SETTINGS.items():
        common += ["--set", f"{k}={v}"]
    t = {}

    def stage(name, *extra):
        t0 = time.perf_counter()
        rc = cspine([name, *common, *extra])
        t[name] = t.get(name, 0.0) + time.perf_counter() - t0
        return rc

    assert stage("demo-data", "--workers", "1", "--no-progress") == 0
    assert stage("prepare", "--workers", "1", "--no-progress") == 0
    index = pd.read_parquet(run / "data" / "index.parquet")
    n_train = int((index.split == "train").sum())
    assert 2 <= n_train <= 8 and (index.split == "holdout").sum() >= 30
    assert stage("train", "--no-progress") == 0
    assert stage("sample", "--no-progress") == 0

    # strict gate: the flagged samples fail it
    assert stage("audit", "--no-progress", "--set", "audit.exclude_flagged=false") == 1
    strict = json.loads((run / "audit" / "summary.json").read_text())
    assert strict["passed"] is False and strict["n_flagged"] >= strict["n_samples"] // 2

    # excluding the flagged images does not help: far more are flagged than chance allows
    assert stage("audit", "--no-progress", "--exclude-flagged") == 1
    s = json.loads((run / "audit" / "summary.json").read_text())
    assert s["exclude_flagged"] is True and s["passed"] is False
    assert s["flag_rate_exceeded"] is True and s["flag_rate"] > s["max_flag_rate"]
    assert s["n_flagged"] > s["max_flagged"]
    gate = read_gate(run)
    assert not gate.passed and "memorises" in gate.reason and "neither images nor weights" in gate.reason

    capsys.readouterr()
    assert stage("package") != 0
    assert "memorises" in capsys.readouterr().err
    release = run / "release"
    shipped = [p for sub in ("dataset", "model") for p in (release / sub).rglob("*") if p.is_file()]
    assert shipped == []  # only package's provenance record (incomplete: it never finished) is there
    assert not json.loads((release / "record.json").read_text())["complete"]
    with capsys.disabled():
        print(f"\n[memorising] {n_train} training images; flagged {s['n_flagged']} of {s['n_samples']} samples "
              f"(rate {s['flag_rate']:.0%}) vs ceiling {s['max_flagged']} ({s['max_flag_rate']:.0%}, chance "
              f"{s['chance_flag_rate']:.3f}/image); flagged by method {s['n_flagged_by_method']}; "
              + ", ".join(f"{k} {v:.0f} s" for k, v in t.items()))
