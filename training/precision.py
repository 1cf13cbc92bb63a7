"""How `cspine train` runs its arithmetic: the precision setting, and choosing it by measurement.

A :class:`Precision` is accelerate's ``mixed_precision`` ("no" = fp32, "bf16", "fp16") plus two layout
and compiler switches: channels_last memory format and ``torch.compile`` (``nn.Module.compile``, in
place, so state-dict keys stay plain). ``train.mixed_precision: auto`` (the default) times a few
training steps of each candidate on this machine and this model at start-up
(training/precision_probe.py) and keeps the fastest; an explicit value ("no"/"fp32", "bf16", "fp16")
is used as given, with the plain layout and no compiler, and nothing is timed.

Decisions:
- Candidates: fp32 and bf16 everywhere (bf16 autocast runs on any CPU, fast only where it has bf16
  instructions), fp16 only on CUDA (no fp16 autocast training on CPUs), each with channels_last off and
  on. ``torch.compile`` only on CUDA, and only on the fastest eager candidate: compiling costs minutes
  there and is worth it for a run of thousands of steps; on a CPU it costs about as long as the demo's
  whole training and needs a C++ toolchain.
- Never slower than fp32: another candidate wins only if it is clearly faster. An eager candidate is timed
  in the same interleaved rounds as fp32 (training/precision_probe.py), so each round is a paired comparison
  under the same load: it must beat fp32 by more than 5% in *every* round. (The rule before compared
  best-of times against fp32's spread over its rounds, so one slow fp32 round of a 3-second probe vetoed
  bf16: measured on a 2-core CPU, fp32 [0.125, 0.156, 0.132] s against bf16 [0.105, 0.121, 0.106] s a step,
  16-22% faster in each round, was ruled noise, and the demo trained in 333 s instead of bf16's 240 s.) A
  compiled candidate, timed in rounds of its own, must still beat fp32's projected time for the remaining
  steps (plus its extra warm-up, i.e. compiling) by more than fp32's spread and at least 5%. Among those
  that qualify, the shortest projected time wins; fp32 wins ties.
- A resumed run keeps the precision it started with (recorded in every checkpoint's
  ``trainer_state.json``): the resumed steps then match an uninterrupted run's.
- Under several processes each times its own candidates at the same moment (the load training will
  see) and the main process's choice is broadcast, so every process trains the same way.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import torch

log = logging.getLogger("cspine.train")

#: Smallest gain over fp32 that counts (below it, fp32's simplicity and exactness win).
MIN_GAIN = 0.05
#: Largest noise allowance: a machine noisier than this still lets a clearly faster candidate win.
MAX_NOISE = 0.5


@dataclass(frozen=True)
class Precision:
    """One way to run training: accelerate's mixed_precision, memory format, compiler."""

    mixed_precision: str = "no"
    channels_last: bool = False
    compile: bool = False

    @property
    def label(self) -> str:
        name = "fp32" if self.mixed_precision == "no" else self.mixed_precision
        return name + ("+channels_last" if self.channels_last else "") + ("+compile" if self.compile else "")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Precision":
        return cls(str(d["mixed_precision"]), bool(d.get("channels_last", False)), bool(d.get("compile", False)))


FP32 = Precision()


@dataclass
class Timing:
    """Seconds per training step of one candidate (one entry per timed round), or why it failed."""

    precision: Precision
    batch: int
    seconds: list[float] = field(default_factory=list)
    warmup_s: float = 0.0
    error: str | None = None

    @property
    def best(self) -> float:
        return min(self.seconds) if self.seconds and self.error is None else math.inf

    @property
    def images_per_s(self) -> float:
        return self.batch / self.best if math.isfinite(self.best) else 0.0

    def to_dict(self) -> dict:
        return {"precision": self.precision.label, **self.precision.to_dict(), "batch": self.batch,
                "images_per_s": round(self.images_per_s, 3), "seconds_per_step": [round(s, 5) for s in self.seconds],
                "warmup_s": round(self.warmup_s, 3), "error": self.error}


def candidates(device: torch.device) -> list[Precision]:
    """The eager candidates for ``device`` (fp32 first); compiling is tried separately on CUDA."""
    precisions = ["no", "bf16"]
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            precisions.remove("bf16")
        precisions.append("fp16")
    return [Precision(p, cl) for cl in (False, True) for p in precisions]


def noise_of(timing: Timing) -> float:
    """Relative spread (max - min) / min of repeated timings: how far two equal candidates may differ."""
    s = timing.seconds
    return (max(s) - min(s)) / min(s) if len(s) > 1 and min(s) > 0 else 0.0


def projected_seconds(timing: Timing, base: Timing, remaining_steps: int) -> float:
    """Seconds for the rest of the run: steps at the best rate plus extra warm-up (compiling) over fp32's."""
    return remaining_steps * timing.best + max(0.0, timing.warmup_s - base.warmup_s)


def paired_gains(timing: Timing, base: Timing) -> list[float]:
    """Per-round gains ``1 - t / t_fp32`` of a candidate timed in the same interleaved rounds as fp32
    (eager candidates: one entry per round); empty when the rounds do not pair up (pruned after one
    round, or compiled and timed separately)."""
    if timing.precision.compile or len(timing.seconds) != len(base.seconds) or len(base.seconds) < 2:
        return []
    return [1 - t / b for t, b in zip(timing.seconds, base.seconds)]


def choose(timings: list[Timing], remaining_steps: int) -> tuple[Precision, str]:
    """The fastest candidate that is clearly faster than fp32 (module docstring), else fp32; and why."""
    base = next((t for t in timings if t.precision == FP32), None)
    if base is None or not math.isfinite(base.best):
        return FP32, "fp32 could not be timed; training in fp32"
    others = [t for t in timings if t.precision != FP32 and math.isfinite(t.best)]
    if not others:
        return FP32, "no other candidate could be timed"
    margin = max(MIN_GAIN, min(noise_of(base), MAX_NOISE))

    def gain(t: Timing) -> float:
        return 1 - projected_seconds(t, base, remaining_steps) / projected_seconds(base, base, remaining_steps)

    def why(t: Timing) -> str | None:
        """How ``t`` clearly beats fp32, or None."""
        rounds = paired_gains(t, base)
        if rounds:
            return (f"{t.precision.label} is {gain(t):.0%} faster than fp32, and faster by more than "
                    f"{MIN_GAIN:.0%} in each of {len(rounds)} paired rounds ({', '.join(f'{g:.0%}' for g in rounds)})"
                    if min(rounds) > MIN_GAIN and gain(t) > MIN_GAIN else None)
        if gain(t) > margin:
            return f"{t.precision.label} is {gain(t):.0%} faster than fp32 (noise margin {margin:.0%})"
        return None

    winners = [(t, why(t)) for t in others]
    winners = [(t, w) for t, w in winners if w is not None]
    if winners:
        best, reason = min(winners, key=lambda tw: projected_seconds(tw[0], base, remaining_steps))
        return best.precision, reason
    best = min(others, key=lambda t: projected_seconds(t, base, remaining_steps))
    rounds = paired_gains(best, base)
    detail = (f"its paired rounds {', '.join(f'{g:.0%}' for g in rounds)} are not all above {MIN_GAIN:.0%}"
              if rounds else f"not more than the noise margin {margin:.0%}")
    return FP32, f"fp32: the fastest other candidate, {best.precision.label}, gains {gain(best):.0%}; {detail}"


def configured(mixed_precision: str, device: torch.device) -> Precision:
    """The precision an explicit ``train.mixed_precision`` means on ``device`` (fp16 needs CUDA)."""
    if mixed_precision == "fp16" and device.type != "cuda":
        log.warning("fp16 needs a GPU; training in bf16 on the CPU instead")
        return Precision("bf16")
    return Precision(mixed_precision)


def describe(timings: list[Timing]) -> str:
    """One line per candidate, for the log."""
    lines = []
    for t in timings:
        what = f"{t.images_per_s:8.1f} img/s" if t.error is None else f"failed: {t.error}"
        warm = f"  (warm-up {t.warmup_s:.1f} s)" if t.precision.compile else ""
        lines.append(f"  {t.precision.label:<28}{what}{warm}")
    return "\n".join(lines)
