"""DDPM training (`cspine train`): data/ pixel cache -> model/ (checkpoints, loss log, grids, pipeline).

Trains a diffusers ``UNet2DModel`` with the ``DDPMScheduler`` forward process, under accelerate (mixed
precision, gradient accumulation, multi-GPU with ``accelerate launch -m cspine train`` and no code
change), AdamW with warm-up (``diffusers.optimization.get_scheduler``) and gradient clipping, and an EMA
of the weights (diffusers ``EMAModel`` with warm-up). The EMA weights are what is saved and sampled.

The run reads as the steps of diffusers' examples/unconditional_image_generation and NVlabs EDM's
training loop, one function each: :func:`choose_precision` (training/precision.py),
:func:`build_accelerator`, :func:`build_trainer` (model, EMA, optimizer, LR schedule),
:func:`resume_or_restart`, :func:`train_step` (one optimizer step; the loss itself is
training/loss.py), :func:`after_step` (checkpoint, grid) and :func:`finish`. The data stream is
training/train_data.py, checkpoints training/checkpoints.py, the loss log training/loss_log.py, the
grids training/grids.py.

Writes, in ``model/``:
  checkpoints/step-N/   accelerate ``save_state`` (model, optimizer, LR schedule, RNG), ``unet_ema/``
                        (safetensors, loadable by ``UNet2DModel.from_pretrained``), ``ema_state.json``,
                        ``scheduler/`` and ``trainer_state.json``; written to a temporary folder and renamed.
  loss.csv              one row per optimizer step (step, loss, lr, ema_decay, images_per_s)
  grids/step-N.png      DDPM samples of the EMA weights every ``train.sample_every`` steps
  pipeline/             the final ``DDPMPipeline`` (EMA U-Net + scheduler, safetensors)
  train_summary.json    written last; a run whose summary reaches ``max_steps`` is skipped. Its
                        ``precision`` entry records the setting used, how it was chosen and, with
                        ``train.mixed_precision: auto``, every candidate's measured images/s.

Conditional runs (``model.condition``): the curvature class goes in through the U-Net's class embedding and
the landmark layout as extra input channels (cspine/generation/hub_pipeline.py explains the design); each image's class
and layout are dropped together with probability ``condition.drop_prob`` (stream (5, micro, rank)), and
images without a class or keypoints train as null / zero map. ``model/shape_model.json`` (the statistical
shape model of the training keypoints, cspine/generation/shape_model.py) is written before the first step, and the
exported pipeline is the custom ``CSpineConditionalPipeline`` (training/pipeline_export.py).

Determinism and resume: the images, timesteps and noise of optimizer step s are a pure function of
(seed, s, process rank), so a run resumed from ``step-N`` sees exactly the batches an uninterrupted run
would.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from cspine import atomic
from cspine.config import RunConfig
from cspine.rundir import RunDir
from training.checkpoints import (
    export_pipeline, list_checkpoints, read_trainer_state, restore_ema, save_checkpoint,
)
from training.grids import grid_conditions, write_grid
from training.loss import denoising_loss, min_snr_weights, noised_batch
from training.loss_log import LossLog, truncate_loss_log
from cspine.generation.hub_pipeline import MAP_CHANNELS, render_layout
from training.model import build_noise_scheduler, build_unet, conditioned_forward, count_parameters
from training.precision import Precision, choose, configured, describe
from training.train_data import batch_indices, condition_drop, load_train_conditions, load_train_pixels

log = logging.getLogger("cspine.train")

#: Largest layout-map cache (float32 bytes) rendered once at start; larger sets render per micro-batch.
MAP_CACHE_BYTES = 256 * 2**20


class TrainingInterrupted(RuntimeError):
    """Raised by the test hook ``stop_after`` to simulate a killed run."""


@dataclass
class TrainResult:
    step: int
    skipped: bool
    resumed_from: int | None
    images_per_s: float | None


@dataclass
class Trainer:
    """Everything a run holds while it trains: built by :func:`build_trainer`, advanced by :func:`train_step`."""

    cfg: RunConfig
    accelerator: Any
    unet: Any  # as prepared by accelerate (wrapped for several processes)
    ema: Any
    optimizer: Any
    lr_scheduler: Any
    noise_scheduler: Any
    data: torch.Tensor
    precision: Precision
    step: int = 0
    resumed_from: int | None = None
    classes: torch.Tensor | None = None  # [N] curvature class per training row (0 = none), conditional runs
    points: torch.Tensor | None = None  # [N, 23, 2] keypoints per row (NaN = none), layout-conditional runs
    maps: torch.Tensor | None = None  # [N, C, R, R] the rows' layout maps, rendered once when small enough

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def raw_unet(self):
        return self.accelerator.unwrap_model(self.unet)


def is_trained(run: RunDir, max_steps: int) -> bool:
    """Whether model/ holds a finished run of at least ``max_steps`` steps (summary and pipeline)."""
    summary = run.model / "train_summary.json"
    if not summary.is_file() or not (run.pipeline / "model_index.json").is_file():
        return False
    try:
        return int(json.loads(summary.read_text(encoding="utf-8")).get("step", -1)) >= max_steps
    except (ValueError, json.JSONDecodeError):
        return False


# -- build -----------------------------------------------------------------------------------------

def process_state():
    """accelerate's ``PartialState`` (this process's rank, device, process group), created as ``Accelerator()``
    would: honouring ``ACCELERATE_USE_CPU``, without which several processes on a machine without CUDA
    would each train alone instead of joining one gloo group. (accelerate 1.15's ``launch --cpu`` sets it
    but starts one process without MPI; ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu
    --num_processes N`` starts N CPU processes, as tests/training/test_train_multiprocess.py does.)"""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def choose_precision(cfg: RunConfig, run: RunDir, resume: bool, data: torch.Tensor) -> dict:
    """How this run trains: kept from its checkpoint on resume, as configured, or measured (``auto``).

    Returns the record written to train_summary.json and trainer_state.json: the setting
    (:meth:`Precision.to_dict`), ``choice`` (its label), ``how`` and, when measured, ``reason``,
    ``timings`` and the probe's batch, device and duration.
    """
    from accelerate.utils import broadcast_object_list

    state = process_state()
    last = list_checkpoints(run)[-1] if resume and list_checkpoints(run) else 0
    if last:
        saved = read_trainer_state(run, last).get("precision")
        if saved:
            log.info("resuming in %s, the precision the run started with", saved["choice"])
            return saved
    if cfg.train.mixed_precision != "auto":
        p = configured(cfg.train.mixed_precision, state.device)
        return {"choice": p.label, **p.to_dict(), "how": "configured"}
    record = measure_precision(cfg, data, state.device, state.process_index, cfg.train.max_steps - last)
    if state.num_processes > 1:  # every process trains as the main one measured
        box = [record]
        broadcast_object_list(box, from_process=0)
        record = box[0]
    return record


def measure_precision(cfg: RunConfig, data: torch.Tensor, device: torch.device, rank: int, remaining: int) -> dict:
    """Time every candidate on ``device`` with this run's model and first images; keep the fastest."""
    from training.loss import noised_batch
    from training.precision_probe import probe, probe_batch

    n = probe_batch(device, cfg.train.batch_size)
    clean = data[torch.from_numpy(batch_indices(len(data), cfg.seed, 0, n, rank, 1))]
    batch = noised_batch(clean, build_noise_scheduler(cfg.model), cfg.model.prediction_type, cfg.seed, 0, rank)
    cond = cfg.model.condition
    labels = torch.ones(n, dtype=torch.long) if cond.curvature else None
    maps = render_layout(torch.full((n, 23, 2), data.shape[-1] / 2.0), data.shape[-1], cond.map_sigma) \
        if cond.keypoints else None

    def build():
        unet = build_unet(cfg.model, data.shape[-1])
        return conditioned_forward(unet, labels, maps) if cond.curvature else unet

    t0 = time.perf_counter()
    timings = probe(build, batch, device)
    seconds = time.perf_counter() - t0
    p, reason = choose(timings, remaining)
    log.info("precision: %s (%s); measured in %.1f s on %s, %d images a step:\n%s",
             p.label, reason, seconds, device, n, describe(timings))
    return {"choice": p.label, **p.to_dict(), "how": "measured", "reason": reason, "device": str(device),
            "probe_batch": n, "probe_seconds": round(seconds, 2), "timings": [t.to_dict() for t in timings]}


def build_accelerator(cfg: RunConfig, run: RunDir, precision: Precision):
    """The ``Accelerator`` of a run: its precision, gradient accumulation and (optional) TensorBoard."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    tc = cfg.train
    if AcceleratorState._shared_state.get("_mixed_precision", precision.mixed_precision) != precision.mixed_precision:
        # accelerate keeps one process-wide state and refuses a second precision; a later train() in the
        # same process (tests, benchmarks) may measure another, so that state is reset (the process
        # group, in PartialState, stays). What accelerate's own tests do between precisions.
        AcceleratorState._reset_state()
    return Accelerator(
        mixed_precision=precision.mixed_precision,
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        log_with="tensorboard" if tc.tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(run.model), logging_dir=str(run.model / "tensorboard")),
    )


def setup_accelerator(cfg: RunConfig, run: RunDir, resume: bool, data: torch.Tensor, accelerator=None):
    """(accelerator, precision, precision record): a given accelerator as it is, else one built for the
    precision :func:`choose_precision` picks."""
    if accelerator is not None:
        precision = Precision(accelerator.mixed_precision)
        return accelerator, precision, {"choice": precision.label, **precision.to_dict(), "how": "given accelerator"}
    record = choose_precision(cfg, run, resume, data)
    precision = Precision.from_dict(record)
    return build_accelerator(cfg, run, precision), precision, record


def build_trainer(cfg: RunConfig, accelerator, data: torch.Tensor, precision: Precision | None = None,
                  conditions: tuple[torch.Tensor, torch.Tensor] | None = None) -> Trainer:
    """Seeded U-Net, noise scheduler, EMA, AdamW and LR schedule, prepared by ``accelerator``.

    ``precision`` adds the memory format and compiler; its mixed precision is the accelerator's.
    """
    from diffusers import UNet2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    tc = cfg.train
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    unet = build_unet(cfg.model, data.shape[-1])
    precision = precision or Precision(accelerator.mixed_precision)
    if precision.channels_last:
        unet.to(memory_format=torch.channels_last)  # accelerate's save_state stores them contiguous
    if precision.compile:
        unet.compile()  # in place: state-dict keys stay those of a plain UNet2DModel
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
    classes, points = conditions if conditions is not None else (None, None)
    cond = cfg.model.condition
    points = points if cond.keypoints else None
    size = data.shape[-1]
    maps = None
    if points is not None and points.shape[0] * MAP_CHANNELS * size * size * 4 <= MAP_CACHE_BYTES:
        # a row's layout never changes (no augmentation): render each once, not every step (~90 ms a CPU step)
        maps = torch.cat([render_layout(points[k:k + 64], size, cond.map_sigma * size / 64)
                          for k in range(0, len(points), 64)])
    return Trainer(cfg, accelerator, unet, ema, optimizer, lr_scheduler, noise_scheduler, data, precision,
                   classes=classes if cond.curvature else None, points=points, maps=maps)


# -- resume ----------------------------------------------------------------------------------------

def resume_or_restart(tr: Trainer, run: RunDir, resume: bool) -> None:
    """Load the newest checkpoint (``resume``) or delete model/'s earlier outputs; prepare model/."""
    if resume and list_checkpoints(run):
        tr.step = list_checkpoints(run)[-1]
        folder = run.checkpoint(tr.step)
        tr.accelerator.load_state(str(folder))
        restore_ema(tr.ema, folder)
        tr.ema.to(tr.accelerator.device)
        tr.resumed_from = tr.step
        log.info("resuming from %s", folder)
    elif not resume and tr.main:
        for p in (run.checkpoints, run.grids, run.pipeline):
            shutil.rmtree(p, ignore_errors=True)
        for p in (run.loss_log, run.model / "train_summary.json"):
            p.unlink(missing_ok=True)
    tr.accelerator.wait_for_everyone()
    if tr.main:
        for p in (run.model, run.grids, run.checkpoints):
            p.mkdir(parents=True, exist_ok=True)
        truncate_loss_log(run.loss_log, tr.step)
        if tr.cfg.train.tensorboard:
            tr.accelerator.init_trackers("train")
        log.info("training %s parameters on %d images at %d px, %d process(es), %s",
                 f"{count_parameters(tr.unet):,}", len(tr.data), tr.data.shape[-1], tr.world, tr.precision.label)


# -- one step --------------------------------------------------------------------------------------

def train_step(tr: Trainer) -> tuple[float, float]:
    """One optimizer step (``gradient_accumulation_steps`` micro-batches), then the LR schedule and EMA.

    Returns (loss averaged over micro-batches and processes, the learning rate the step used).
    """
    tc, acc = tr.cfg.train, tr.accelerator
    ga = tc.gradient_accumulation_steps
    losses = []
    for k in range(ga):
        micro = tr.step * ga + k
        rows = batch_indices(len(tr.data), tr.cfg.seed, micro, tc.batch_size, tr.rank, tr.world)
        clean = tr.data[torch.from_numpy(rows)].to(acc.device)
        batch = noised_batch(clean, tr.noise_scheduler, tr.cfg.model.prediction_type, tr.cfg.seed, micro, tr.rank,
                             tc.timesteps)
        noisy, labels = batch_conditions(tr, rows, micro, batch.noisy)
        with acc.accumulate(tr.unet):
            with acc.autocast():
                pred = tr.unet(noisy, batch.timesteps, class_labels=labels).sample
            weights = None
            if tc.min_snr_gamma is not None:
                weights = min_snr_weights(tr.noise_scheduler, batch.timesteps, tr.cfg.model.prediction_type,
                                          tc.min_snr_gamma)
            loss = denoising_loss(pred, batch.target, weights)
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(tr.unet.parameters(), tc.max_grad_norm)
            tr.optimizer.step()
            tr.optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    lr = tr.lr_scheduler.get_last_lr()[0]
    tr.lr_scheduler.step()
    tr.ema.step(tr.raw_unet.parameters())
    tr.step += 1
    return acc.reduce(torch.stack(losses).mean(), reduction="mean").item(), lr


def batch_conditions(tr: Trainer, rows, micro: int, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(U-Net input, class labels) of a micro-batch: the noisy images with their layout maps concatenated, and
    their classes, the dropped rows (:func:`condition_drop`) as null class and zero map. Unconditional: as is."""
    if tr.classes is None:
        return noisy, None
    cond = tr.cfg.model.condition
    idx = torch.from_numpy(rows)
    drop = condition_drop(tr.cfg.seed, micro, tr.rank, len(rows), cond.drop_prob)
    labels = torch.where(drop, 0, tr.classes[idx]).to(noisy.device)
    if tr.points is None:
        return noisy, labels
    if tr.maps is not None:
        maps = tr.maps[idx] * (~drop).float()[:, None, None, None]
    else:
        pts = tr.points[idx].clone()
        pts[drop] = float("nan")
        size = noisy.shape[-1]
        maps = render_layout(pts.to(noisy.device), size, cond.map_sigma * size / 64)
    return torch.cat([noisy, maps.to(device=noisy.device, dtype=noisy.dtype)], dim=1), labels


# -- after a step: checkpoint and grid -------------------------------------------------------------

def trainer_state(tr: Trainer, precision_record: dict) -> dict:
    """What ``trainer_state.json`` records about the run at its current step (and how it computes)."""
    return {"step": tr.step, "seed": tr.cfg.seed, "world_size": tr.world, "precision": precision_record}


def after_step(tr: Trainer, run: RunDir, protected: set[int], precision_record: dict) -> None:
    """Write the checkpoint and the grid that are due after the current step."""
    tc = tr.cfg.train
    last = tr.step == tc.max_steps
    if tr.step % tc.checkpoint_every == 0 or last:
        save_checkpoint(run, tr.accelerator, tr.ema, tr.raw_unet, tr.noise_scheduler,
                        trainer_state(tr, precision_record), tc.keep_checkpoints, protected)
    if tr.main and (tr.step % tc.sample_every == 0 or last):
        conditions = None
        if tr.classes is not None:
            from cspine.generation.shape_model import read_shape_model

            conditions = grid_conditions(read_shape_model(shape_model_path(run)) or {}, tc.grid_images, tr.cfg.seed,
                                         tr.data.shape[-1])
        write_grid(tr.ema, tr.raw_unet, tr.noise_scheduler, run.grids / f"step-{tr.step}.png",
                   tc.grid_images, tc.grid_steps, tr.cfg.seed, conditions)


def finish(tr: Trainer, run: RunDir, summary: dict) -> None:
    """Export the EMA pipeline and write ``train_summary.json`` (last: it marks the run finished)."""
    if tr.main:
        if tr.classes is not None:
            from training.pipeline_export import export_conditional_pipeline
            from cspine.generation.shape_model import read_shape_model

            export_conditional_pipeline(tr.ema, tr.raw_unet, tr.noise_scheduler, run.pipeline,
                                        read_shape_model(shape_model_path(run)), tr.cfg.model.condition.map_sigma)
        else:
            export_pipeline(tr.ema, tr.raw_unet, tr.noise_scheduler, run.pipeline)
        atomic.write_json(run.model / "train_summary.json", {
            "step": tr.step, "parameters": count_parameters(tr.raw_unet),
            "resolution": tr.data.shape[-1], "train_images": len(tr.data), "processes": tr.world,
            "mixed_precision": tr.accelerator.mixed_precision, "resumed_from": tr.resumed_from, **summary,
        })
        log.info("wrote %s", run.pipeline)
    if tr.cfg.train.tensorboard:
        tr.accelerator.end_training()
    tr.accelerator.wait_for_everyone()


def shape_model_path(run: RunDir):
    return run.model / "shape_model.json"


def write_shape_model(cfg: RunConfig, run: RunDir, classes, points, resolution: int) -> None:
    """Fit and write model/shape_model.json (a pure function of the train split's labels and the config)."""
    from cspine.generation import shape_model

    cond = cfg.model.condition
    model = shape_model.fit_shape_model(classes.numpy(), points.numpy(), resolution, cond.shape_modes,
                                        cond.min_class_images, cond.map_sigma)
    if cond.keypoints and not model["classes"]:
        log.warning("fewer than %d training images with all 23 keypoints: samples get no layout",
                    cond.min_class_images)
    shape_model.write_shape_model(shape_model_path(run), model)


# -- the run ---------------------------------------------------------------------------------------

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
    ``on_step(step, loss)`` is called after every optimizer step, before its checkpoint and grid.
    """
    from tqdm.auto import tqdm

    tc = cfg.train
    if is_trained(run, tc.max_steps):
        log.info("model/ already trained to %d steps: skipping (delete %s to retrain)", tc.max_steps, run.model)
        return TrainResult(tc.max_steps, True, None, None)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    data = load_train_pixels(run)  # the model's resolution is the pixel cache's (prepare's record says which)
    conditions = load_train_conditions(run) if cfg.model.condition.curvature else None
    accelerator, precision, record = setup_accelerator(cfg, run, resume, data, accelerator)
    tr = build_trainer(cfg, accelerator, data, precision, conditions)
    resume_or_restart(tr, run, resume)
    if tr.main:
        if conditions is not None:
            write_shape_model(cfg, run, *conditions, data.shape[-1])
        else:
            shape_model_path(run).unlink(missing_ok=True)
    protected = set(tc.keep_steps)

    images_per_step = tc.batch_size * tc.gradient_accumulation_steps * tr.world
    rate = None
    tr.unet.train()
    with LossLog(run.loss_log, enabled=tr.main) as loss_log, \
            tqdm(total=tc.max_steps, initial=tr.step, desc="training", unit="step",
                 disable=not (progress and tr.main)) as bar:
        t_last = time.perf_counter()
        while tr.step < tc.max_steps:
            loss, lr = train_step(tr)
            now = time.perf_counter()
            rate, t_last = images_per_step / max(now - t_last, 1e-9), now
            loss_log.write(tr.step, loss, lr, tr.ema.cur_decay_value or 0.0, rate)
            if tr.main and tc.tensorboard:
                tr.accelerator.log({"loss": loss, "lr": lr}, step=tr.step)
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.1f}")
            bar.update(1)
            if on_step is not None:
                on_step(tr.step, loss)
            after_step(tr, run, protected, record)
            if stop_after is not None and tr.step >= stop_after:
                raise TrainingInterrupted(f"stopped after step {tr.step} (test hook)")
    finish(tr, run, {"precision": record})
    return TrainResult(tr.step, False, tr.resumed_from, rate)
