"""Benchmarks of training and sampling (`make bench`): the project's code against plain diffusers.

Training, on the demo config's U-Net at 64 px, batch 16, every loop timed in this process over STEPS
optimizer steps after WARMUP, two rounds interleaved, the best round kept (the machine is shared).
Two ratios, side by side, because they answer different questions:

- same work: ``training.train.train`` against the plain loop of diffusers'
  examples/unconditional_image_generation (accelerate ``prepare``/``accumulate``/``backward``,
  gradient clipping, AdamW with a warm-up schedule, EMA stepped every step) fed from the same cached
  tensors (a shuffled ``TensorDataset``), both at the same precision: the one ``auto`` picks on this
  machine. Only the loop's own overhead differs (the project's per-step loss reduction and log row,
  its seeded per-batch noise), so the ratio should be about 1: the project is not slower than diffusers.
- what a user would run: ``cspine train`` as the demo config runs it (``mixed_precision: auto``, the
  pixel cache) against the diffusers example as its README runs it (fp32, an image folder decoded
  from PNG every epoch: 512 x 400 8-bit PNGs, the phantom's source size, through torchvision
  Resize/CenterCrop/RandomHorizontalFlip/ToTensor/Normalize). The auto probe's start-up seconds are
  reported beside it, not inside the steps.

Sampling, 50 DDPM steps on 8 images with the same U-Net: the share of wall time spent outside the
U-Net's forward passes ("overhead", measured with forward hooks) for ``cspine.generation.sampling.generate`` and
for ``DDPMPipeline`` with its default scheduler, and the images/s ratio (aim: overhead < 5%).

Ratios are of the best round of each loop; the per-round ratios (each pair run back to back) are
printed and recorded too: on a shared machine their spread is the measurement's uncertainty.
Figures go to the screen and to bench/results.json (key "training").
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

WARMUP, STEPS, BATCH, RES, ROUNDS = 2, 6, 16, 64, 3


def _demo_cfg(root: Path, max_steps: int, precision: str = "auto"):
    from cspine.stages import load_config

    return load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml", {
        "run_dir": str(root), "data.resolution": RES, "train.batch_size": BATCH, "train.max_steps": max_steps,
        "train.checkpoint_every": 10_000, "train.sample_every": 10_000, "train.grid_images": 1,
        "train.grid_steps": 1, "train.mixed_precision": precision,
    })


def project_train(root: Path, precision: str) -> tuple[float, dict]:
    """(images/s of training.train.train over STEPS steps after WARMUP, its precision record)."""
    import json

    from cspine.rundir import RunDir
    from training.train import train

    shutil.rmtree(root / "model", ignore_errors=True)
    stamps: dict[int, float] = {}
    train(_demo_cfg(root, WARMUP + STEPS, precision), RunDir(root), resume=False, progress=False,
          on_step=lambda s, _loss: stamps.__setitem__(s, time.perf_counter()))
    record = json.loads((RunDir(root).model / "train_summary.json").read_text())["precision"]
    return STEPS * BATCH / (stamps[WARMUP + STEPS] - stamps[WARMUP]), record


def write_png_folder(folder: Path, n: int, seed: int = 0) -> None:
    """n 8-bit 512 x 400 PNGs (blob images scaled up), what the example decodes every epoch."""
    from PIL import Image

    from tests.fakerun import blob_image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = (blob_image(rng, 128) >> 8).astype(np.uint8)
        Image.fromarray(small).resize((400, 512), Image.BILINEAR).save(folder / f"{i:04d}.png")


def png_loader(folder: Path) -> torch.utils.data.DataLoader:
    """The example's data path: decode, resize, crop, flip, normalise every image every epoch."""
    from PIL import Image
    from torchvision import transforms

    files = sorted(folder.glob("*.png"))
    tf = transforms.Compose([
        transforms.Resize(RES, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(RES), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize([0.5], [0.5]),
    ])

    class Folder(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            with Image.open(files[i]) as im:
                return tf(im.convert("L"))

    return torch.utils.data.DataLoader(Folder(), batch_size=BATCH, shuffle=True, num_workers=0, drop_last=True)


def cached_loader(pixels: torch.Tensor) -> torch.utils.data.DataLoader:
    """The same cached tensors the project trains on, shuffled in batches (no decoding)."""
    class Cached(torch.utils.data.Dataset):
        def __len__(self):
            return len(pixels)

        def __getitem__(self, i):
            return pixels[i]

    return torch.utils.data.DataLoader(Cached(), batch_size=BATCH, shuffle=True, num_workers=0, drop_last=True)


def fresh_accelerator(mixed_precision: str):
    """An Accelerator at ``mixed_precision`` (accelerate's process-wide state reset if it held another)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision)


def example_train(loader: torch.utils.data.DataLoader, model_cfg, mixed_precision: str) -> float:
    """Images/s of the training loop of diffusers' examples/unconditional_image_generation (with --use_ema)."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from training.model import build_unet

    accelerator = fresh_accelerator(mixed_precision)
    torch.manual_seed(0)
    model = build_unet(model_cfg, RES)
    sched = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    lr_sched = get_scheduler("cosine", opt, num_warmup_steps=50, num_training_steps=1000)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    model, opt, loader, lr_sched = accelerator.prepare(model, opt, loader, lr_sched)
    ema.to(accelerator.device)
    model.train()
    step, t0 = 0, None
    while step < WARMUP + STEPS:
        for clean in loader:
            noise = torch.randn(clean.shape, device=clean.device)
            t = torch.randint(0, 1000, (clean.shape[0],), device=clean.device)
            noisy = sched.add_noise(clean, noise, t)
            with accelerator.accumulate(model):
                pred = model(noisy, t).sample
                loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                lr_sched.step()
                opt.zero_grad()
            ema.step(model.parameters())
            step += 1
            if step == WARMUP:
                t0 = time.perf_counter()
            if step == WARMUP + STEPS:
                break
    return STEPS * BATCH / (time.perf_counter() - t0)


def paired(project: list[float], baseline: list[float]) -> list[float]:
    return [round(a / b, 3) for a, b in zip(project, baseline)]


def training_figures(tmp: Path) -> dict:
    """Both ratios (see the module docstring), best of ROUNDS interleaved rounds per loop."""
    from tests.fakerun import make_fake_run
    from training.train_data import load_train_pixels

    run = make_fake_run(tmp / "run", n_train=64, n_holdout=4, n_samples=1, size=RES, with_model=False)
    write_png_folder(tmp / "pngs", 64)
    model_cfg = _demo_cfg(run.root, 1).model
    pixels = load_train_pixels(run)
    rates: dict[str, list[float]] = {"project_auto": [], "example_png_fp32": [], "project_same": [],
                                     "example_cached_same": []}
    record = None
    for _ in range(ROUNDS):
        rate, rec = project_train(run.root, "auto")
        rates["project_auto"].append(rate)
        record = record or rec  # the first round's choice is the precision of the "same work" pair
        rates["example_png_fp32"].append(example_train(png_loader(tmp / "pngs"), model_cfg, "no"))
        rates["project_same"].append(project_train(run.root, record["mixed_precision"])[0])
        rates["example_cached_same"].append(example_train(cached_loader(pixels), model_cfg, record["mixed_precision"]))
    best = {k: max(v) for k, v in rates.items()}
    return {
        "resolution": RES, "batch": BATCH, "timed_steps": STEPS,
        "rounds": {k: [round(x, 2) for x in v] for k, v in rates.items()},
        "images_per_s": {k: round(v, 2) for k, v in best.items()},
        "same_work_precision": "fp32" if record["mixed_precision"] == "no" else record["mixed_precision"],
        "auto_choice": record["choice"], "auto_probe_seconds": record.get("probe_seconds"),
        "auto_timings": {t["precision"]: t["images_per_s"] for t in record.get("timings", [])},
        "ratio_same_work": round(best["project_same"] / best["example_cached_same"], 3),
        "ratio_user": round(best["project_auto"] / best["example_png_fp32"], 3),
        # each round's pair ran back to back: their spread shows how noisy the machine was
        "ratio_same_work_rounds": paired(rates["project_same"], rates["example_cached_same"]),
        "ratio_user_rounds": paired(rates["project_auto"], rates["example_png_fp32"]),
    }


def print_training(f: dict) -> None:
    r = f["images_per_s"]
    print(f"training  ({RES} px, batch {BATCH}, demo U-Net, {torch.get_num_threads()} threads, "
          f"best of {ROUNDS} rounds of {STEPS} steps)")
    print(f"  auto probe ({f['auto_probe_seconds']} s at start-up, chose {f['auto_choice']}): "
          + ", ".join(f"{k} {v:.1f}" for k, v in f["auto_timings"].items()) + " img/s")
    print(f"  same work ({f['same_work_precision']}, cached tensors):  project {r['project_same']:6.1f} img/s   "
          f"diffusers example loop {r['example_cached_same']:6.1f} img/s   ratio {f['ratio_same_work']:.2f}x")
    print(f"  what a user would run:              project {r['project_auto']:6.1f} img/s   "
          f"diffusers example (fp32, PNG decode) {r['example_png_fp32']:6.1f} img/s   ratio {f['ratio_user']:.2f}x")
    print(f"  per-round ratios (pairs run back to back): same work {f['ratio_same_work_rounds']}, "
          f"user {f['ratio_user_rounds']}")


class ForwardTimer:
    """Accumulates the wall time spent inside a module's forward passes."""

    def __init__(self, module):
        self.total = 0.0
        self._t = 0.0
        self.handles = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, *_):
        self._t = time.perf_counter()

    def _post(self, *_):
        self.total += time.perf_counter() - self._t

    def remove(self):
        for h in self.handles:
            h.remove()


def sampling_overheads(unet, n: int = 8, steps: int = 50) -> dict[str, float]:
    from diffusers import DDPMPipeline, DDPMScheduler

    from cspine.generation.sampling import generate, make_scheduler

    unet.eval().requires_grad_(False)
    out = {}
    timer = ForwardTimer(unet)
    t0 = time.perf_counter()
    generate(unet, make_scheduler("ddpm", DDPMScheduler(num_train_timesteps=1000)), range(n), 0, steps,
             batch_size=n, progress=False)
    wall = time.perf_counter() - t0
    out["project_overhead"], out["project_img_s"] = 1 - timer.total / wall, n / wall
    timer.total = 0.0
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        pipe(batch_size=n, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np")
    wall = time.perf_counter() - t0
    out["pipeline_overhead"], out["pipeline_img_s"] = 1 - timer.total / wall, n / wall
    timer.remove()
    return out


def sampling_figures(model_cfg) -> dict:
    from training.model import build_unet

    torch.manual_seed(0)
    unet = build_unet(model_cfg, RES)
    rounds = [sampling_overheads(unet) for _ in range(2)]
    best = {k: (min if "overhead" in k else max)(r[k] for r in rounds) for k in rounds[0]}
    print("sampling  (50 DDPM steps, 8 images)")
    print(f"  project  generate():           overhead {best['project_overhead']:6.1%}  {best['project_img_s']:.2f} img/s")
    print(f"  baseline DDPMPipeline default: overhead {best['pipeline_overhead']:6.1%}  {best['pipeline_img_s']:.2f} img/s")
    print(f"  ratio project/pipeline images/s: {best['project_img_s'] / best['pipeline_img_s']:.2f}x; "
          f"project overhead {'<' if best['project_overhead'] < 0.05 else '>='} 5% aim")
    return {k: round(v, 4) for k, v in best.items()}


def main() -> None:
    from bench.results import record

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        train_figs = training_figures(tmp)
        print_training(train_figs)
        samp = sampling_figures(_demo_cfg(tmp, 1).model)
        path = record("training", {"training": train_figs, "sampling": samp})
        print(f"  figures written to {path}")
        if not all(math.isfinite(train_figs[k]) for k in ("ratio_same_work", "ratio_user")):
            raise RuntimeError("training benchmark gave no rate")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
