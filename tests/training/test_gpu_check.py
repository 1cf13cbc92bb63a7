"""The GPU check (bench/gpu_check.py) in its CPU dry run: every section prints, the projection adds up.

The projection is recomputed here from the recorded rates and the paper config (configs/csxa-256.yaml),
not taken from the script's own arithmetic.
"""

from __future__ import annotations

import json

import pytest
import torch

from cspine.stages import load_config
from tests.fakerun import REPO


def test_dry_run_prints_every_section_and_a_projection_that_adds_up(tmp_path, capsys):
    from bench.gpu_check import main

    results = tmp_path / "results.json"
    results.write_text(json.dumps({"audit": {"kept": True}}))  # another benchmark's figures stay
    assert main(["--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    for section in ("training images/s", "sampling images/s", "audit embedding images/s", "projection"):
        assert section in out, section

    data = json.loads(results.read_text())
    assert data["audit"] == {"kept": True}
    g = data["gpu_check"]
    assert g["dry_run"] is True and g["seconds"] < 120
    train = {k: v["images_per_s"] for k, v in g["training_images_per_s"].items()}
    assert set(train) == {"fp32", "bf16", "fp32+channels_last", "bf16+channels_last"}
    assert all(v > 0 for v in train.values())
    assert {"ddpm-1000 fp32", "ddpm-1000 bf16", "ddim-50 fp32", "ddim-50 bf16"} <= set(g["sampling_images_per_s"])
    # a step costs the same in either schedule, so DDPM-1000 is ~20x slower per image than DDIM-50
    ratio = g["sampling_images_per_s"]["ddim-50 fp32"] / g["sampling_images_per_s"]["ddpm-1000 fp32"]
    assert 5 < ratio < 80, ratio

    cfg = load_config(REPO / "configs" / "csxa-256.yaml")
    hours = g["projection"]["hours"]
    expect_train = cfg.train.max_steps * cfg.train.batch_size / max(train.values()) / 3600
    expect_sample = 20_063 / g["sampling_images_per_s"]["ddpm-1000 fp32"] / 3600
    # the paper config's audit runs the default copy detectors, without Inception: Inception embeds only
    # evaluate's images (samples and holdout), not the 4,963 training images
    assert "inception" not in cfg.audit.methods
    expect_inception = (20_063 + 551) / g["audit_images_per_s"]["inception_audit_cpu"] / 3600
    assert hours["training"] == pytest.approx(expect_train, rel=2e-3)
    assert hours["sampling"] == pytest.approx(expect_sample, rel=2e-3)
    assert hours["inception"] == pytest.approx(expect_inception, rel=2e-3)
    assert hours["total"] == pytest.approx(expect_train + expect_sample + expect_inception, rel=2e-3)
    assert f"{hours['total']:8.2f} h" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so(capsys):
    from bench.gpu_check import main

    assert main([]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_compile_is_tried_fastest_eager_precision_first():
    from bench.gpu_check import compiled_settings

    eager = {"fp32": {"images_per_s": 10.0}, "bf16": {"images_per_s": 20.0}, "fp16": {"images_per_s": 15.0},
             "bf16+channels_last": {"images_per_s": 30.0}, "fp16+channels_last": {"error": "x", "images_per_s": 0.0}}
    assert [p.label for p in compiled_settings(eager)] == ["bf16+compile", "fp16+compile", "fp32+compile"]
