"""Timing training steps under each precision candidate (training/precision.py) on this machine.

Used by `cspine train` with ``train.mixed_precision: auto`` at start-up, and by the GPU check
(bench/gpu_check.py) to print training images/s per setting.

Each candidate gets its own copy of the same seeded U-Net, its own AdamW and one fixed noised batch of
the run's real images, and a timed step is the training step itself: forward under autocast, the
float32 MSE loss (training/loss.py), backward (through a GradScaler for fp16), gradient clipping,
the optimizer step. The candidates are timed in interleaved rounds, one step each, and each keeps its
fastest round, so a burst of load from another process hurts every candidate alike rather than one;
after the first round a candidate slower than 1.5x fp32 is dropped (it cannot win within the noise).
Five rounds by default: each round pairs every candidate with fp32 under the same load, and a candidate must
win every pairing (training/precision.py), so a few more rounds make a chance win rarer for under a second.

Everything runs inside ``torch.random.fork_rng``: the probe draws nothing from the generators that
seed the real model and its dropout, so a run with a probe trains exactly as one without.

Batch: on CUDA the run's batch (a GPU's speed depends on it). On a CPU at most 4 images a step:
a CPU has no parallel units for a larger batch to fill, its cost per image hardly depends on the
batch, and 4-image steps keep the probe to a few seconds with the demo U-Net.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch

from training.loss import NoisedBatch, denoising_loss
from training.precision import FP32, Precision, Timing, candidates

#: Images per timed step on a CPU (see the module docstring).
CPU_PROBE_BATCH = 4
#: A candidate slower than this multiple of fp32 after the first round is not timed again.
PRUNE_FACTOR = 1.5


def probe_batch(device: torch.device, batch_size: int) -> int:
    return batch_size if device.type == "cuda" else min(batch_size, CPU_PROBE_BATCH)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepRunner:
    """One candidate: a model copy, its optimizer and a fixed batch; :meth:`step` times one training step."""

    def __init__(self, precision: Precision, model: torch.nn.Module, batch: NoisedBatch, device: torch.device,
                 max_grad_norm: float = 1.0):
        self.precision, self.device, self.max_grad_norm = precision, device, max_grad_norm
        fmt = torch.channels_last if precision.channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=fmt).train()
        if precision.compile:
            self.model.compile()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler("cuda") if precision.mixed_precision == "fp16" else None
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision.mixed_precision)
        self.noisy = batch.noisy.to(device).contiguous(memory_format=fmt)
        self.t, self.target = batch.timesteps.to(device), batch.target.to(device)

    def step(self) -> float:
        """Seconds of one full training step (the device synchronised before and after)."""
        _sync(self.device)
        t0 = time.perf_counter()
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            pred = self.model(self.noisy, self.t).sample
        loss = denoising_loss(pred, self.target)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        _sync(self.device)
        return time.perf_counter() - t0


def _failed(timing: Timing, err: Exception, device: torch.device) -> None:
    timing.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:240]
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _start(precision: Precision, base: torch.nn.Module, batch: NoisedBatch, device: torch.device,
           warmup: int) -> tuple[Timing, StepRunner | None]:
    timing = Timing(precision, int(batch.noisy.shape[0]))
    try:
        runner = StepRunner(precision, copy.deepcopy(base), batch, device)
        timing.warmup_s = sum(runner.step() for _ in range(warmup))
        return timing, runner
    except Exception as err:  # noqa: BLE001 - a candidate that cannot run (OOM, no kernel) just loses
        _failed(timing, err, device)
        return timing, None


def time_precisions(base: torch.nn.Module, batch: NoisedBatch, device: torch.device,
                    settings: list[Precision], rounds: int = 3, warmup: int = 1,
                    prune: bool = True) -> list[Timing]:
    """Time ``settings`` in interleaved rounds of one step each (after ``warmup`` steps); fp32 first."""
    started = [_start(p, base, batch, device, warmup) for p in settings]
    timings = [t for t, _ in started]
    runners = {id(t): r for t, r in started if r is not None}
    for rnd in range(rounds):
        for timing in timings:
            runner = runners.get(id(timing))
            if runner is None:
                continue
            try:
                timing.seconds.append(runner.step())
            except Exception as err:  # noqa: BLE001
                _failed(timing, err, device)
                runners.pop(id(timing))
        if rnd == 0 and prune:
            fp32 = next((t.best for t in timings if t.precision == FP32), math.inf)
            for timing in timings:
                if timing.precision != FP32 and timing.best > PRUNE_FACTOR * fp32:
                    runners.pop(id(timing), None)
    return timings


def probe(build_model: Callable[[], torch.nn.Module], batch: NoisedBatch, device: torch.device,
          try_compile: bool | None = None, rounds: int = 5) -> list[Timing]:
    """Timings of every candidate for ``device`` (and, on CUDA, the fastest one compiled).

    ``build_model`` makes the U-Net (called once, inside ``fork_rng``); ``batch`` is one noised batch.
    """
    if try_compile is None:
        try_compile = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        base = build_model()
        timings = time_precisions(base, batch, device, candidates(device), rounds=rounds)
        eager_best = min(timings, key=lambda t: t.best)
        if try_compile and math.isfinite(eager_best.best):
            p = eager_best.precision
            compiled = Precision(p.mixed_precision, p.channels_last, compile=True)
            timings += time_precisions(base, batch, device, [compiled], rounds=rounds, warmup=2, prune=False)
    return timings
