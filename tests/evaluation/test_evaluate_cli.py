"""`cspine evaluate` end to end on the fake run (tests/fakerun.py: blob images, a randomly initialised tiny
U-Net, so curve numbers are meaningless but every path runs): metrics.json, summary.md, figures, resume."""

from __future__ import annotations

import json


import pytest

from cspine.cli import main


def _args(run, *extra):
    return ["evaluate", "--config", str(run.config), "--run-dir", str(run.root), "--no-progress",
            "--set", "evaluate.max_images=10", "--set", "evaluate.frd_max_images=6",
            "--set", "evaluate.diversity_pairs=20", "--set", "evaluate.kid_subsets=20",
            "--set", "evaluate.checkpoint_curve.num_images=4", "--set", "evaluate.checkpoint_curve.steps=3",
            "--set", "evaluate.sampler_curve.num_images=4",
            "--set", "evaluate.sampler_curve.points=[{scheduler: ddpm, steps: 12}, {scheduler: ddim, steps: 3}, "
                     "{scheduler: dpmsolver++, steps: 3}]",
            *extra]


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CSPINE_CACHE", str(tmp_path / "feature-cache"))
    return tmp_path / "feature-cache"


def test_evaluate_writes_metrics_figures_and_resumes(fake_run, cache_env, capsys):
    assert main(_args(fake_run, "--checkpoints", "--samplers")) == 0
    m = json.loads((fake_run.eval / "metrics.json").read_text())
    assert m["sets"] == {"synthetic": 10, "holdout": 10, "train": 10}
    for key in ("vs_holdout", "vs_train", "real_floor"):
        r = m[key]
        assert r["n_real"] == 10 and r["n_fake"] == 10 and r["fid"] > 0 and 0 <= r["precision"] <= 1
        assert "biased" in r["note"]
    assert m["network"].startswith("fid-inception-v3:")
    from evaluation import washout
    from evaluation.data import load_real, load_samples

    seed = m["config"]["seed"]  # the rule recomputed from the same capped, seeded sets the stage read
    line = washout.threshold(load_real(fake_run, "train", 10, seed + 1).pixels)
    w = m["washed_out"]
    assert w["contrast_line"] == pytest.approx(line)
    fake = load_samples(fake_run, 10, seed + 2).pixels
    assert w["synthetic"] == pytest.approx(float((washout.contrast(fake) < line).mean()))
    assert "Washed-out images" in (fake_run.eval / "summary.md").read_text()
    frd = m["frd"]
    assert ("vs_holdout" in frd and frd["n_real"] == 6) or "skipped" in frd
    assert set(m["diversity"]) == {"synthetic", "holdout", "train"} and m["diversity"]["synthetic"]["scales"] == 3
    assert [r["checkpoint"] for r in m["checkpoint_curve"]] == ["final"]
    pts = m["sampler_curve"]["points"]
    assert [(p["scheduler"], p["steps"]) for p in pts] == [("ddpm", 12), ("ddim", 3), ("dpmsolver++", 3)]
    assert all(p["images_per_s"] > 0 and p["n_images"] == 4 for p in pts)
    assert all(p["device"].startswith("CPU (") for p in pts)  # the U-Net ran on the CPU, and the point says so
    assert m["sampler_curve"]["device"] == pts[0]["device"]
    rec = m["sampler_curve"]["recommended"]
    assert rec["reference"] == {k: rec["reference"][k] for k in rec["reference"]} and rec["reference"]["steps"] == 12
    # the classifier two-sample test: AUC in its interval; its figure shows synthetic images only
    c = m["c2st"]
    assert c["n_a"] == 10 and c["n_b"] == 10 and c["a"] == "holdout" and c["ci95"][0] <= c["auc"] <= c["ci95"][1]
    import pandas as pd

    synthetic_ids = set(pd.read_parquet(fake_run.samples_table)["image_id"].astype(str))
    assert c["most_synthetic"] and {r["image_id"] for r in c["most_synthetic"]} <= synthetic_ids
    ps = [r["p_synthetic"] for r in c["most_synthetic"]]
    assert ps == sorted(ps, reverse=True)
    assert "figures/c2st_most_synthetic.png" in (fake_run.eval / "summary.md").read_text()
    for name in ("examples", "synthetic_examples", "checkpoint_curve", "sampler_curve", "c2st_most_synthetic"):
        assert (fake_run.eval / "figures" / f"{name}.png").stat().st_size > 1000
    summary = (fake_run.eval / "summary.md").read_text()
    assert not summary.startswith("# ") and "figures/sampler_curve.png" in summary and "Recommended default" in summary
    assert "figures/examples.png" not in summary  # real pixels: the card includes this snippet
    # the shared feature cache holds the Inception features under the network id
    assert any(cache_env.rglob("chunk-*.npy"))

    # a second run skips everything that is done (no sampling, main metrics reused)
    before = (fake_run.eval / "sampler_curve.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(_args(fake_run, "--checkpoints", "--samplers")) == 0
    out = capsys.readouterr().out
    assert "up to date" in out and "sampler curve:" not in out and "checkpoint curve:" not in out
    assert (fake_run.eval / "sampler_curve.json").stat().st_mtime_ns == before
    assert json.loads((fake_run.eval / "metrics.json").read_text())["vs_holdout"] == m["vs_holdout"]


def test_missing_samples_is_a_clear_error(fake_run, cache_env, capsys):
    import shutil

    shutil.rmtree(fake_run.samples)
    assert main(_args(fake_run)) == 2
    err = capsys.readouterr().err
    assert "cspine sample" in err and "Traceback" not in err
