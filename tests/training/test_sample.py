"""Sampling (cspine/generation/sampling.py, training/sample.py): determinism, resume, process split, ranges.

Uses the fake run's randomly initialised tiny 64 px DDPMPipeline (tests/fakerun.py): its images are
noise-like, but every property tested here (which noise an index gets, which bytes a shard writes,
what range a scheduler keeps) does not depend on training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cspine.stages import load_config
from cspine.images import read_gray
from cspine.rundir import SAMPLES_COLUMNS, RunDir
from cspine.generation.sampling import SCHEDULERS

#: Largest difference allowed for the same image generated in different batch sizes (float32 in [0, 1]).
#: Batched convolutions round differently; measured differences are ~1e-5 or less.
BATCH_TOLERANCE = 1e-3

SMALL = {"sample.num_images": 7, "sample.shard_size": 3, "sample.batch_size": 2, "sample.steps": 3,
         "sample.scheduler": "ddpm"}


def cfg_for(run: RunDir, **extra):
    return load_config(run.config, {"run_dir": str(run.root), **SMALL, **extra})


def file_bytes(run: RunDir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.sample_images.glob("*.png"))}


@pytest.fixture()
def empty_samples(fake_run):
    import shutil

    shutil.rmtree(fake_run.samples)
    return fake_run


def test_killed_sampling_resumes_byte_identical(empty_samples, tmp_path, monkeypatch):
    import shutil

    import training.sample as stage

    run = empty_samples
    ref = RunDir(tmp_path / "ref")
    shutil.copytree(run.root, ref.root)
    ref_table = stage.sample(cfg_for(ref), ref, progress=False)

    real = stage.make_shard
    calls = {"n": 0}

    def dying(run_, shard, unet, scheduler, want):
        calls["n"] += 1
        if calls["n"] == 2:  # killed mid-shard: one image of shard 1 written, no record
            from cspine.images import write_png
            write_png(run_.samples / f"images/{stage.image_id(shard.checkpoint, shard.indices[0])}.png",
                      np.zeros((64, 64), np.uint16))
            raise KeyboardInterrupt
        return real(run_, shard, unet, scheduler, want)

    monkeypatch.setattr(stage, "make_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        stage.sample(cfg_for(run), run, progress=False)
    assert not run.samples_table.exists()
    monkeypatch.setattr(stage, "make_shard", real)

    table = stage.sample(cfg_for(run), run, progress=False)
    assert tuple(table.columns) == SAMPLES_COLUMNS
    assert list(table["image_id"]) == [f"final-{i:06d}" for i in range(7)], "an index is missing or duplicated"
    pd.testing.assert_frame_equal(table, ref_table)
    pd.testing.assert_frame_equal(pd.read_parquet(run.samples_table), ref_table)
    assert file_bytes(run) == file_bytes(ref)
    img = read_gray(run.sample_images / "final-000003.png")
    assert img.dtype == np.uint16 and img.shape == (64, 64)

    # rerun: everything is recorded, nothing is regenerated
    monkeypatch.setattr(stage, "make_shard", lambda *a, **k: pytest.fail("finished shard regenerated"))
    before = run.samples_table.stat().st_mtime_ns
    stage.sample(cfg_for(run), run, progress=False)
    # ... and the table is not rewritten: audit and evaluate key their skip on it
    assert run.samples_table.stat().st_mtime_ns == before


def test_split_across_processes_equals_one_process(empty_samples, tmp_path, monkeypatch):
    """Two ranks (run one after the other, as accelerate's PartialState would report them) write the same files."""
    import shutil

    import accelerate

    import training.sample as stage

    run = empty_samples
    single = RunDir(tmp_path / "single")
    shutil.copytree(run.root, single.root)
    stage.sample(cfg_for(single), single, progress=False)

    class FakeState:
        num_processes = 2
        device = torch.device("cpu")

        def __init__(self, rank):
            self.process_index = rank
            self.is_main_process = rank == 0

        def wait_for_everyone(self):
            pass

    for rank in (1, 0):  # rank 0 last: it assembles samples.parquet from both ranks' shard records
        monkeypatch.setattr(accelerate, "PartialState", lambda rank=rank, **kw: FakeState(rank))
        if rank == 1:
            with pytest.raises(RuntimeError, match="no record"):  # rank 0's shards are not there yet
                stage.sample(cfg_for(run), run, progress=False)
        else:
            stage.sample(cfg_for(run), run, progress=False)
    assert file_bytes(run) == file_bytes(single)
    pd.testing.assert_frame_equal(pd.read_parquet(run.samples_table), pd.read_parquet(single.samples_table))


def test_eight_bit_and_several_checkpoints(fake_run):
    import shutil

    import training.sample as stage

    shutil.rmtree(fake_run.samples)
    # a step-N checkpoint folder holds unet_ema/ like the pipeline's unet/
    shutil.copytree(fake_run.pipeline / "unet", fake_run.checkpoint(5) / "unet_ema")
    table = stage.sample(cfg_for(fake_run, **{"sample.bit_depth": 8, "sample.num_images": 2,
                                              "sample.checkpoints": ["step-5", "final"], "train.keep_steps": [5]}),
                          fake_run, progress=False)
    assert list(table["image_id"]) == ["step-5-000000", "step-5-000001", "final-000000", "final-000001"]
    assert list(table["checkpoint"]) == ["step-5", "step-5", "final", "final"]
    assert read_gray(fake_run.samples / table["file"][0]).dtype == np.uint8
    # same weights and seed: the same image whatever the checkpoint name
    a = read_gray(fake_run.samples / table["file"][0])
    b = read_gray(fake_run.samples / table["file"][2])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="sampling settings"):  # changed settings are not silently mixed
        stage.sample(cfg_for(fake_run, **{"sample.bit_depth": 16, "sample.num_images": 2,
                                          "sample.checkpoints": ["step-5", "final"], "train.keep_steps": [5]}),
                     fake_run, progress=False)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_image_depends_only_on_seed_and_index(fake_run, name):
    from cspine.generation.sampling import generate, load_unet, make_scheduler

    unet = load_unet(fake_run)
    sched = make_scheduler(name, fake_run)
    a = generate(unet, sched, [0, 1, 2, 3, 4], seed=11, steps=4, batch_size=5, progress=False)
    b = generate(unet, sched, [0, 1, 2, 3, 4], seed=11, steps=4, batch_size=2, progress=False)
    c = generate(unet, sched, [3], seed=11, steps=4, batch_size=1, progress=False)
    assert a.shape == (5, 64, 64) and a.dtype == np.float32
    assert np.abs(a - b).max() <= BATCH_TOLERANCE
    assert np.abs(a[3] - c[0]).max() <= BATCH_TOLERANCE
    assert np.abs(a[0] - a[1]).mean() > 0.01, "different indices must get different noise"
    d = generate(unet, sched, [3], seed=12, steps=4, batch_size=1, progress=False)
    assert np.abs(c - d).mean() > 0.01, "a different seed must give a different image"


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_output_range(fake_run, name):
    """Before the final clamp, every scheduler's result lies in [0, 1] (x in [-1, 1]) and is not constant."""
    from cspine.generation.sampling import generate_batch, load_unet, make_scheduler

    unet = load_unet(fake_run)
    x = generate_batch(unet, make_scheduler(name, fake_run), range(3), seed=0, steps=10, clamp=False)
    assert float(x.min()) >= -1e-4 and float(x.max()) <= 1 + 1e-4, (float(x.min()), float(x.max()))
    assert float(x.std()) > 0.05


def test_dpmsolver_without_thresholding_diverges(fake_run):
    """The negative control of the test above: the pitfall make_scheduler guards against is real."""
    from cspine.generation.sampling import generate_batch, load_unet, make_scheduler

    unet = load_unet(fake_run)
    x = generate_batch(unet, make_scheduler("dpmsolver++", fake_run, thresholding=False), range(2), seed=0,
                       steps=10, clamp=False)
    assert float(x.abs().max()) > 2.0


def test_make_scheduler_flags_and_sources(fake_run):
    from diffusers import DDPMPipeline

    from cspine.generation.sampling import make_scheduler

    s = make_scheduler("dpmsolver++", fake_run)
    assert s.config.thresholding and s.config.sample_max_value == 1.0 and s.config.algorithm_type == "dpmsolver++"
    assert make_scheduler("ddim", fake_run).config.clip_sample
    sde = make_scheduler("dpmsolver++-sde-karras", fake_run)
    assert sde.config.algorithm_type == "sde-dpmsolver++" and sde.config.use_karras_sigmas and sde.config.thresholding
    uni = make_scheduler("unipc", fake_run)
    assert type(uni).__name__ == "UniPCMultistepScheduler" and uni.config.disable_corrector == []  # corrector on
    pipe = DDPMPipeline.from_pretrained(fake_run.pipeline)
    assert make_scheduler("ddpm", pipe.scheduler).config.num_train_timesteps == 1000
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler("euler", fake_run)


def test_load_unet_errors_name_the_checkpoint(fake_run):
    from cspine.generation.sampling import load_unet

    with pytest.raises(FileNotFoundError, match="step-7"):
        load_unet(fake_run, "step-7")
    with pytest.raises(ValueError, match="final"):
        load_unet(fake_run, "best")


@pytest.mark.parametrize("name", ["dpmsolver++-karras", "dpmsolver++-sde-karras", "unipc-karras"])
@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
def test_karras_spacing_starts_at_edm_sigma_max_and_runs_to_the_end(name, beta_schedule):
    """Karras sigmas run from min(80, the chain's largest sigma) to its smallest with rho 7 (Karras et al.
    2022, eq. 5), written out here; on cosine betas (largest sigma ~20,000) they used to pile onto one
    timestep and the solver ran past its sigmas. Every step must run and the timesteps strictly decrease."""
    import torch
    from diffusers import DDPMScheduler

    from cspine.generation.sampling import make_scheduler

    cfg = {"num_train_timesteps": 1000, "beta_schedule": beta_schedule, "prediction_type": "v_prediction"}
    sched = make_scheduler(name, cfg)
    sched.set_timesteps(25)
    ab = DDPMScheduler(**cfg).alphas_cumprod.double()
    chain = ((1 - ab) / ab).sqrt()
    hi, lo, rho = min(80.0, chain[-1].item()), chain[0].item(), 7.0
    ramp = torch.linspace(0, 1, 25, dtype=torch.float64)
    want = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    assert torch.allclose(sched.sigmas[:25].double(), want, rtol=1e-3)
    ts = sched.timesteps.tolist()
    assert all(a > b for a, b in zip(ts, ts[1:])), ts
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for t in sched.timesteps:
        x = sched.step(torch.zeros_like(x), t, x).prev_sample
    assert torch.isfinite(x).all()
