"""Training (training/train.py): resume after a kill, loss log continuity, skip, pipeline export, EMA.

All runs use a tiny U-Net (~180k parameters, 32 px) on tests/fakerun.py's blob data so the module runs
in well under a minute on 2 cores.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from cspine.stages import load_config
from cspine.rundir import RunDir
from tests.fakerun import REPO, make_fake_run

TINY = {
    "data.resolution": 32,
    "model.block_out_channels": [16, 32],
    "model.down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "model.up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "model.norm_num_groups": 8,
    "train.batch_size": 4,
    "train.max_steps": 8,
    "train.warmup_steps": 2,
    "train.learning_rate": 0.002,
    "train.checkpoint_every": 3,
    "train.keep_checkpoints": 2,
    "train.sample_every": 100,
    "train.grid_images": 4,
    "train.grid_steps": 2,
    "sample.checkpoints": ["final"],
    # explicit, so the two runs compared below cannot pick different precisions (auto is tested in
    # test_train_precision.py)
    "train.mixed_precision": "bf16",
    # the unconditional path (a stock DDPMPipeline); the conditional one is tests/training/test_conditional.py
    "model.condition.curvature": False,
    "model.condition.keypoints": False,
}


def tiny_cfg(root: Path, **extra):
    return load_config(REPO / "configs" / "demo.yaml", {"run_dir": str(root), **TINY, **extra})


def loss_rows(run: RunDir) -> list[dict]:
    with open(run.loss_log, newline="") as fh:
        return list(csv.DictReader(fh))


def unet_state(folder: Path) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DModel

    return UNet2DModel.from_pretrained(folder, use_safetensors=True).state_dict()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An uninterrupted 8-step run (the reference the resumed run must equal)."""
    from training.train import train

    root = tmp_path_factory.mktemp("uninterrupted") / "run"
    run = make_fake_run(root, size=32, with_model=False)
    result = train(tiny_cfg(root), run, progress=False)
    assert result.step == 8 and not result.skipped and result.resumed_from is None
    return run


def test_killed_run_resumes_where_it_stopped(tmp_path, trained):
    from training.checkpoints import list_checkpoints
    from training.train import TrainingInterrupted, train

    root = tmp_path / "run"
    run = make_fake_run(root, size=32, with_model=False)
    cfg = tiny_cfg(root)
    with pytest.raises(TrainingInterrupted):
        train(cfg, run, progress=False, stop_after=5)  # "killed" after step 5; last checkpoint is step 3
    assert list_checkpoints(run) == [3]
    assert [int(r["step"]) for r in loss_rows(run)] == [1, 2, 3, 4, 5]
    assert not (run.pipeline / "model_index.json").exists()

    result = train(cfg, run, progress=False)
    assert result.resumed_from == 3 and result.step == 8
    rows = loss_rows(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 9)), "loss log has a gap or a duplicate"
    # keep_checkpoints=2: only the newest two survive
    assert list_checkpoints(run) == [6, 8]

    # Same batches, noise, optimizer, LR schedule and EMA state: the resumed run equals the uninterrupted one.
    ref_rows = loss_rows(trained)
    np.testing.assert_allclose([float(r["loss"]) for r in rows], [float(r["loss"]) for r in ref_rows], rtol=1e-5)
    assert [r["lr"] for r in rows] == [r["lr"] for r in ref_rows]
    got, ref = unet_state(run.pipeline / "unet"), unet_state(trained.pipeline / "unet")
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6, msg=f"EMA weight {name} differs")


def test_trained_run_is_skipped_and_grid_written(trained):
    from training.train import train

    assert train(tiny_cfg(trained.root), trained, progress=False).skipped
    grid = trained.grids / "step-8.png"
    from cspine.images import read_gray

    img = read_gray(grid)
    assert img.dtype == np.uint8 and img.shape == (2 * 128 + 2, 2 * 128 + 2)  # 32 px tiles enlarged 4x
    assert img.std() > 0


def test_checkpoint_layout_and_pipeline_loads(trained):
    from diffusers import DDPMPipeline, DiffusionPipeline

    ckpt = trained.checkpoint(8)
    for name in ("model.safetensors", "optimizer.bin", "unet_ema/diffusion_pytorch_model.safetensors",
                 "ema_state.json", "scheduler/scheduler_config.json", "trainer_state.json"):
        assert (ckpt / name).is_file(), name
    assert not list(trained.checkpoints.glob(".tmp-*"))
    assert list(trained.pipeline.rglob("*.safetensors")) and not list(trained.pipeline.rglob("*.bin"))

    pipe = DiffusionPipeline.from_pretrained(trained.pipeline)
    assert isinstance(pipe, DDPMPipeline)
    out = pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (2, 32, 32, 1)
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.std() > 0


def _denoise_loss(unet, clean: torch.Tensor, seed: int = 0) -> float:
    """Mean epsilon-MSE of ``unet`` on ``clean`` at fixed timesteps/noise (lower is better)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(clean.shape, generator=g)
    t = torch.linspace(50, 950, clean.shape[0]).long()
    with torch.no_grad():
        pred = unet(sched.add_noise(clean, noise, t), t).sample
    return float(torch.mean((pred - noise) ** 2))


def test_ema_tracks_the_model_with_warmup(trained):
    """EMA warm-up: after 8 steps the EMA weights have left the init and denoise about as well as the raw model."""
    from diffusers import UNet2DModel
    from safetensors.torch import load_file

    from training.model import build_unet
    from training.train_data import load_train_pixels

    cfg = tiny_cfg(trained.root)
    clean = load_train_pixels(trained)[:16]
    torch.manual_seed(cfg.seed)
    init = build_unet(cfg.model, 32).eval()  # the same seeded init the run started from
    ema = UNet2DModel.from_pretrained(trained.pipeline / "unet", use_safetensors=True).eval()
    raw = UNet2DModel.from_config(ema.config)
    raw.load_state_dict(load_file(trained.checkpoint(8) / "model.safetensors"))
    raw.eval()

    # the EMA moved away from the init, and is not just a copy of the raw model
    torch.set_grad_enabled(False)
    diff_init = sum(float((a - b).abs().sum()) for a, b in zip(ema.parameters(), init.parameters()))
    diff_raw = sum(float((a - b).abs().sum()) for a, b in zip(ema.parameters(), raw.parameters()))
    assert diff_init > 0 and diff_raw > 0

    torch.set_grad_enabled(True)
    l_init, l_raw, l_ema = (_denoise_loss(m, clean) for m in (init, raw, ema))
    assert l_ema < 0.7 * l_init, (l_init, l_raw, l_ema)
    assert l_ema < 1.5 * l_raw, (l_init, l_raw, l_ema)


def test_batches_are_a_pure_function_of_step():
    from training.train_data import batch_indices

    n = 10
    epoch = np.concatenate([batch_indices(n, 7, s, 5) for s in range(2)])
    assert sorted(epoch) == list(range(n)), "each epoch sees every image once"
    two = [batch_indices(n, 7, 0, 2, rank=r, world=2) for r in range(2)]
    np.testing.assert_array_equal(np.concatenate(two), batch_indices(n, 7, 0, 4)), "ranks split one global batch"
    np.testing.assert_array_equal(batch_indices(n, 7, 3, 4), batch_indices(n, 7, 3, 4))


def test_missing_data_is_a_clear_error(tmp_path):
    from training.train import train

    run = RunDir(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="cspine prepare"):
        train(tiny_cfg(run.root), run, progress=False)


def test_cli_train_and_sample(tmp_path):
    from cspine.cli import main

    root = tmp_path / "run"
    make_fake_run(root, size=32, with_model=False)
    sets = [f"{k}={v}" for k, v in {**TINY, "train.max_steps": 2, "train.checkpoint_every": 2,
                                     "sample.num_images": 3, "sample.steps": 2, "sample.shard_size": 2}.items()]
    args = ["--config", str(REPO / "configs" / "demo.yaml"), "--run-dir", str(root)]
    for s in sets:
        args += ["--set", s.replace("'", "")]
    assert main(["train", *args, "--no-progress"]) == 0
    assert main(["sample", *args, "--no-progress"]) == 0
    import pandas as pd

    table = pd.read_parquet(RunDir(root).samples_table)
    assert list(table["image_id"]) == ["final-000000", "final-000001", "final-000002"]
