"""DDPM training (`cspine train`): data/ pixel cache -> model/ (checkpoints, loss log, grids, pipeline).

Reads ``data/index.parquet`` (train split only) and ``data/pixels.npy``; never decodes an image file.
Trains a diffusers ``UNet2DModel`` with the ``DDPMScheduler`` forward process, under accelerate (mixed
precision, gradient accumulation, multi-GPU with ``accelerate launch -m cspine train`` and no code
change), AdamW with warm-up (``diffusers.optimization.get_scheduler``) and gradient clipping, and an EMA
of the weights (diffusers ``EMAModel`` with warm-up). The EMA weights are what is saved and sampled.

Writes, in ``model/``:
  checkpoints/step-N/   accelerate ``save_state`` (model, optimizer, LR schedule, RNG), ``unet_ema/``
                        (safetensors, loadable by ``UNet2DModel.from_pretrained``), ``ema_state.json``,
                        ``scheduler/`` and ``trainer_state.json``; written to a temporary folder and renamed.
  loss.csv              one row per optimizer step (step, loss, lr, ema_decay, images_per_s)
  grids/step-N.png      DDIM samples of the EMA weights every ``train.sample_every`` steps
  pipeline/             the final ``DDPMPipeline`` (EMA U-Net + scheduler, safetensors)
  train_summary.json    written last; a run whose summary reaches ``max_steps`` is skipped

Determinism and resume: the images, timesteps and noise of optimizer step s are a pure function of
(seed, s, process rank), so a run resumed from ``step-N`` sees exactly the batches an uninterrupted run
would. Horizontal flips are NOT used: a lateral radiograph has a facing direction (the anterior side),
and flipping would teach the model mirror-image anatomy that no real film shows.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cspine import atomic
from cspine.config import RunConfig
from cspine.images import png_bytes
from cspine.rundir import RunDir
from training.model import build_noise_scheduler, build_unet, count_parameters

log = logging.getLogger("cspine.train")

LOSS_COLUMNS = ("step", "loss", "lr", "ema_decay", "images_per_s")


class TrainingInterrupted(RuntimeError):
    """Raised by the test hook ``stop_after`` to simulate a killed run."""


# -- data ------------------------------------------------------------------------------------------

def load_train_pixels(run: RunDir) -> torch.Tensor:
    """The train split of the pixel cache as float32 [N, 1, R, R] in [-1, 1] (rows in index order)."""
    index_path = run.require(run.index, "prepare")
    run.require(run.pixels, "prepare")
    try:
        index = pd.read_parquet(index_path, columns=["split", "cache_row"])
    except Exception as err:  # noqa: BLE001 - name the file in the error
        raise ValueError(f"{index_path}: cannot read the data index ({err})") from None
    rows = index.loc[index["split"] == "train", "cache_row"].to_numpy(dtype=np.int64)
    if len(rows) == 0:
        raise ValueError(f"{index_path}: no rows with split == 'train'; nothing to train on")
    pixels = np.load(run.pixels, mmap_mode="r")
    if pixels.ndim != 3 or pixels.shape[1] != pixels.shape[2]:
        raise ValueError(f"{run.pixels}: expected a [N, R, R] array, got shape {pixels.shape}")
    if rows.max() >= pixels.shape[0] or rows.min() < 0:
        raise ValueError(f"{index_path}: cache_row out of range for {run.pixels} with {pixels.shape[0]} rows")
    if pixels.dtype != np.uint16:
        raise ValueError(f"{run.pixels}: expected uint16 pixels, got {pixels.dtype}")
    arr = np.asarray(pixels[np.sort(rows)], dtype=np.float32)
    return torch.from_numpy(arr / 32767.5 - 1.0).unsqueeze(1)


def _stream_seed(seed: int, *parts: int) -> int:
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, parts)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF


def batch_indices(n: int, seed: int, micro_step: int, batch_size: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Rows of micro-batch ``micro_step`` for process ``rank``: a pure function of its arguments.

    The global stream is a concatenation of per-epoch permutations (seeded by (seed, epoch)); each
    micro-step takes ``batch_size * world`` consecutive positions and process ``rank`` its slice, so
    every image is seen once per epoch across all processes.
    """
    per_step = batch_size * world
    start = micro_step * per_step + rank * batch_size
    positions = np.arange(start, start + batch_size)
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(positions // n):
        perm = np.random.default_rng(_stream_seed(seed, 1, int(epoch))).permutation(n)
        mask = positions // n == epoch
        out[mask] = perm[positions[mask] % n]
    return out


# -- checkpoints -----------------------------------------------------------------------------------

def list_checkpoints(run: RunDir) -> list[int]:
    """Steps of the complete checkpoints (a checkpoint folder only exists once fully written)."""
    if not run.checkpoints.is_dir():
        return []
    steps = [int(p.name[5:]) for p in run.checkpoints.iterdir()
             if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()
             and (p / "trainer_state.json").is_file()]
    return sorted(steps)


def prune_checkpoints(run: RunDir, keep: int, protected: set[int]) -> list[int]:
    """Delete all but the newest ``keep`` checkpoints and those in ``protected``; return what was deleted."""
    steps = list_checkpoints(run)
    doomed = [s for s in steps[:-keep] if s not in protected] if keep > 0 else []
    for s in doomed:
        shutil.rmtree(run.checkpoint(s), ignore_errors=True)
    return doomed


def save_ema_unet(ema, unet_template, folder: Path) -> None:
    """Write the EMA weights as a plain UNet2DModel folder (safetensors) at ``folder``."""
    from diffusers import UNet2DModel

    model = UNet2DModel.from_config(unet_template.config)
    ema.copy_to(model.parameters())
    model.save_pretrained(folder, safe_serialization=True)


def ema_state(ema) -> dict:
    state = ema.state_dict()
    state.pop("shadow_params", None)
    return state


def restore_ema(ema, folder: Path) -> None:
    """Load EMA shadow weights (``unet_ema/``) and counters (``ema_state.json``) from a checkpoint."""
    from diffusers import UNet2DModel

    saved = UNet2DModel.from_pretrained(folder / "unet_ema", use_safetensors=True)
    state = json.loads((folder / "ema_state.json").read_text(encoding="utf-8"))
    state["shadow_params"] = [p.detach().clone().float() for p in saved.parameters()]
    ema.load_state_dict(state)


# -- loss log --------------------------------------------------------------------------------------

def truncate_loss_log(path: Path, last_step: int) -> None:
    """Keep the rows of ``path`` with step <= ``last_step`` (rows after a checkpoint are replayed on resume)."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= last_step]
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOSS_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


# -- grids -----------------------------------------------------------------------------------------

def grid_image(images: np.ndarray, min_tile: int = 128) -> np.ndarray:
    """Tile [n, R, R] floats in [0, 1] into one 8-bit image (near-square, 2 px gaps).

    Small images are enlarged by an integer factor (nearest neighbour, so no pixel is invented) until a
    tile is at least ``min_tile`` pixels: a 64 px grid at 1x is too small for a person to judge.
    """
    scale = max(1, math.ceil(min_tile / images.shape[-1]))
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, r, _ = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    gap = 2
    out = np.zeros((rows * (r + gap) - gap, cols * (r + gap) - gap), dtype=np.float32)
    for k, img in enumerate(images):
        y, x = divmod(k, cols)
        out[y * (r + gap): y * (r + gap) + r, x * (r + gap): x * (r + gap) + r] = img
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def write_grid(ema, unet_template, noise_scheduler, path: Path, n: int, steps: int, seed: int) -> None:
    """Sample ``n`` images with the EMA weights (ancestral DDPM, ``steps``) and write them as one PNG.

    Stochastic DDPM rather than DDIM: early in training the deterministic samplers keep the model's small
    denoising errors as grain, so the grid would look worse than the model is."""
    from diffusers import UNet2DModel

    from training.sampling import generate, make_scheduler

    model = UNet2DModel.from_config(unet_template.config)
    ema.copy_to(model.parameters())
    model.eval().requires_grad_(False)
    images = generate(model, make_scheduler("ddpm", noise_scheduler), range(n), seed, steps,
                      batch_size=min(n, 16), progress=False)
    atomic.write_bytes(path, png_bytes(grid_image(images)))


# -- the loop --------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    step: int
    skipped: bool
    resumed_from: int | None
    images_per_s: float | None


def is_trained(run: RunDir, max_steps: int) -> bool:
    summary = run.model / "train_summary.json"
    if not summary.is_file() or not (run.pipeline / "model_index.json").is_file():
        return False
    try:
        return int(json.loads(summary.read_text(encoding="utf-8")).get("step", -1)) >= max_steps
    except (ValueError, json.JSONDecodeError):
        return False


def train(
    cfg: RunConfig,
    run: RunDir,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    accelerator=None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train (or resume, or skip) the run's DDPM; see the module docstring for what is written.

    ``stop_after`` (tests): raise :class:`TrainingInterrupted` after that optimizer step, as if killed.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from diffusers import UNet2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    tc = cfg.train
    if is_trained(run, tc.max_steps):
        log.info("model/ already trained to %d steps: skipping (delete %s to retrain)", tc.max_steps, run.model)
        return TrainResult(tc.max_steps, True, None, None)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)

    if accelerator is None:
        mixed = tc.mixed_precision
        if mixed == "fp16" and not torch.cuda.is_available():
            log.warning("fp16 needs a GPU; training in bf16 on the CPU instead")
            mixed = "bf16"
        accelerator = Accelerator(
            mixed_precision=mixed,
            gradient_accumulation_steps=tc.gradient_accumulation_steps,
            log_with="tensorboard" if tc.tensorboard else None,
            project_config=ProjectConfiguration(project_dir=str(run.model), logging_dir=str(run.model / "tensorboard")),
        )
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    seed = cfg.seed

    data = load_train_pixels(run)
    resolution = data.shape[-1]
    if resolution != cfg.data.resolution:
        raise ValueError(f"{run.pixels}: cached images are {resolution} px but data.resolution is {cfg.data.resolution}")

    torch.manual_seed(seed)  # the initial weights depend on the seed only
    unet = build_unet(cfg.model, resolution)
    noise_scheduler = build_noise_scheduler(cfg.model)
    ema = EMAModel(
        unet.parameters(), decay=tc.ema.decay, use_ema_warmup=tc.ema.use_warmup,
        inv_gamma=tc.ema.inv_gamma, power=tc.ema.power, model_cls=UNet2DModel, model_config=unet.config,
    )
    optimizer = torch.optim.AdamW(unet.parameters(), lr=tc.learning_rate, weight_decay=tc.weight_decay)
    lr_scheduler = get_scheduler(tc.lr_schedule, optimizer, num_warmup_steps=tc.warmup_steps,
                                 num_training_steps=tc.max_steps)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    # Stepped once per optimizer step by this loop (not prepared, so the process count does not scale
    # it) and saved by save_state through register_for_checkpointing.
    accelerator.register_for_checkpointing(lr_scheduler)
    ema.to(accelerator.device)

    step = 0
    resumed_from = None
    if resume and list_checkpoints(run):
        step = list_checkpoints(run)[-1]
        folder = run.checkpoint(step)
        accelerator.load_state(str(folder))
        restore_ema(ema, folder)
        ema.to(accelerator.device)
        resumed_from = step
        log.info("resuming from %s", folder)
    elif not resume and main:
        for p in (run.checkpoints, run.grids, run.pipeline):
            shutil.rmtree(p, ignore_errors=True)
        for p in (run.loss_log, run.model / "train_summary.json"):
            p.unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    if main:
        run.model.mkdir(parents=True, exist_ok=True)
        run.grids.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        truncate_loss_log(run.loss_log, step)
        if tc.tensorboard:
            accelerator.init_trackers("train")
        log.info("training %s parameters on %d images at %d px, %d process(es), %s",
                 f"{count_parameters(unet):,}", len(data), resolution, world, accelerator.mixed_precision)
    protected = {int(c[5:]) for c in cfg.sample.checkpoints if c.startswith("step-")}

    def save_checkpoint(at: int) -> None:
        final = run.checkpoint(at)
        tmp = run.checkpoints / f".tmp-step-{at}"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        if main:
            save_ema_unet(ema, accelerator.unwrap_model(unet), tmp / "unet_ema")
            atomic.write_json(tmp / "ema_state.json", ema_state(ema))
            noise_scheduler.save_pretrained(tmp / "scheduler")
            atomic.write_json(tmp / "trainer_state.json", {"step": at, "seed": seed, "world_size": world})
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            prune_checkpoints(run, tc.keep_checkpoints, protected)
        accelerator.wait_for_everyone()

    log_fh = None
    writer = None
    if main:
        new_file = not run.loss_log.is_file()
        log_fh = open(run.loss_log, "a", newline="", encoding="utf-8")
        writer = csv.DictWriter(log_fh, fieldnames=LOSS_COLUMNS)
        if new_file:
            writer.writeheader()

    ga = tc.gradient_accumulation_steps
    bsz = tc.batch_size
    bar = tqdm(total=tc.max_steps, initial=step, desc="training", unit="step", disable=not (progress and main))
    t_last = time.perf_counter()
    rate = None
    unet.train()
    try:
        while step < tc.max_steps:
            losses = []
            for k in range(ga):
                micro = step * ga + k
                rows = batch_indices(len(data), seed, micro, bsz, rank, world)
                clean = data[torch.from_numpy(rows)].to(accelerator.device)
                gen = torch.Generator("cpu").manual_seed(_stream_seed(seed, 2, micro, rank))
                noise = torch.randn(clean.shape, generator=gen).to(accelerator.device)
                t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,), generator=gen).to(accelerator.device)
                noisy = noise_scheduler.add_noise(clean, noise, t)
                if cfg.model.prediction_type == "epsilon":
                    target = noise
                elif cfg.model.prediction_type == "v_prediction":
                    target = noise_scheduler.get_velocity(clean, noise, t)
                else:
                    target = clean
                with accelerator.accumulate(unet):
                    with accelerator.autocast():
                        pred = unet(noisy, t).sample
                    loss = F.mse_loss(pred.float(), target.float())
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(unet.parameters(), tc.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
            lr = lr_scheduler.get_last_lr()[0]
            lr_scheduler.step()
            ema.step(accelerator.unwrap_model(unet).parameters())
            step += 1
            mean_loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
            now = time.perf_counter()
            rate = bsz * ga * world / max(now - t_last, 1e-9)
            t_last = now
            if main:
                writer.writerow(dict(step=step, loss=f"{mean_loss:.6f}", lr=f"{lr:.6g}",
                                     ema_decay=f"{ema.cur_decay_value or 0.0:.6f}", images_per_s=f"{rate:.2f}"))
                log_fh.flush()
                if tc.tensorboard:
                    accelerator.log({"loss": mean_loss, "lr": lr}, step=step)
                bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}")
            bar.update(1)
            if on_step is not None:
                on_step(step, mean_loss)
            if step % tc.checkpoint_every == 0 or step == tc.max_steps:
                if main:
                    log_fh.flush()
                save_checkpoint(step)
            if main and (step % tc.sample_every == 0 or step == tc.max_steps):
                write_grid(ema, accelerator.unwrap_model(unet), noise_scheduler, run.grids / f"step-{step}.png",
                           tc.grid_images, tc.grid_steps, seed)
            if stop_after is not None and step >= stop_after:
                raise TrainingInterrupted(f"stopped after step {step} (test hook)")
    finally:
        bar.close()
        if log_fh is not None:
            log_fh.close()

    if main:
        export_pipeline(ema, accelerator.unwrap_model(unet), noise_scheduler, run.pipeline)
        atomic.write_json(run.model / "train_summary.json", {
            "step": step, "parameters": count_parameters(accelerator.unwrap_model(unet)),
            "resolution": resolution, "train_images": len(data), "processes": world,
            "mixed_precision": accelerator.mixed_precision, "resumed_from": resumed_from,
        })
        log.info("wrote %s", run.pipeline)
    if tc.tensorboard:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return TrainResult(step, False, resumed_from, rate)


def export_pipeline(ema, unet_template, noise_scheduler, folder: Path) -> None:
    """Write the EMA ``DDPMPipeline`` (safetensors) to ``folder`` atomically (temp folder, then rename)."""
    from diffusers import DDPMPipeline, UNet2DModel

    model = UNet2DModel.from_config(unet_template.config)
    ema.copy_to(model.parameters())
    tmp = folder.parent / f".tmp-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=model, scheduler=noise_scheduler).save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
