"""Benchmarks of training and sampling (`make bench`): the project's code against plain diffusers.

Training, on the demo config's U-Net at 64 px, batch 16, both loops timed in this process over the
same number of optimizer steps after a warm-up:
- baseline: the loop of diffusers' examples/unconditional_image_generation as its train.sh runs it:
  fp32 (mixed_precision=no), --use_ema (EMAModel stepped every step), an image folder decoded from
  PNG files every step (512 x 400 8-bit PNGs, the phantom's source size) through torchvision
  Resize/CenterCrop/RandomHorizontalFlip/ToTensor/Normalize, AdamW with warm-up, gradient clipping;
- project: ``training.train.train`` (bf16 autocast on the CPU, the in-memory pixel cache, EMA updated
  every step, loss log), timed between its step callbacks (checkpoint and grid writing excluded: they
  happen outside the timed steps).
Ratio = project images/s / baseline images/s (aim >= 1.5).

Sampling, 50 DDPM steps on 8 images with the same U-Net: the share of wall time spent outside the
U-Net's forward passes ("overhead", measured with forward hooks) for ``training.sampling.generate`` and
for ``DDPMPipeline`` with its default scheduler, and the images/s ratio (aim: overhead < 5%).
The best of two interleaved rounds is kept for each side, since the machine is shared.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

WARMUP, STEPS, BATCH, RES = 2, 6, 16, 64


def _demo_cfg(root: Path, max_steps: int):
    from cspine.stages import load_config

    return load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml", {
        "run_dir": str(root), "data.resolution": RES, "train.batch_size": BATCH, "train.max_steps": max_steps,
        "train.checkpoint_every": 10_000, "train.sample_every": 10_000, "train.grid_images": 1,
        "train.grid_steps": 1,
    })


def project_train(root: Path) -> float:
    """Images/s of training.train.train over STEPS steps after WARMUP."""
    from training.train import train

    shutil.rmtree(root / "model", ignore_errors=True)
    stamps: dict[int, float] = {}
    train(_demo_cfg(root, WARMUP + STEPS), _run(root), resume=False, progress=False,
          on_step=lambda s, _loss: stamps.__setitem__(s, time.perf_counter()))
    return STEPS * BATCH / (stamps[WARMUP + STEPS] - stamps[WARMUP])


def _run(root: Path):
    from cspine.rundir import RunDir

    return RunDir(root)


def write_png_folder(folder: Path, n: int, seed: int = 0) -> None:
    """n 8-bit 512 x 400 PNGs (blob images scaled up), what the baseline decodes every step."""
    from PIL import Image

    from tests.fakerun import blob_image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = (blob_image(rng, 128) >> 8).astype(np.uint8)
        Image.fromarray(small).resize((400, 512), Image.BILINEAR).save(folder / f"{i:04d}.png")


def baseline_train(folder: Path, model_cfg) -> float:
    """Images/s of diffusers' unconditional training example loop (fp32, PNG decoding each step)."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from PIL import Image
    from torchvision import transforms

    from training.model import build_unet

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

    loader = torch.utils.data.DataLoader(Folder(), batch_size=BATCH, shuffle=True, num_workers=0, drop_last=True)
    torch.manual_seed(0)
    model = build_unet(model_cfg, RES)
    sched = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lr_sched = get_scheduler("cosine", opt, num_warmup_steps=50, num_training_steps=1000)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    model.train()
    step, t0 = 0, None
    while step < WARMUP + STEPS:
        for clean in loader:
            noise = torch.randn(clean.shape)
            t = torch.randint(0, 1000, (clean.shape[0],))
            pred = model(sched.add_noise(clean, noise, t), t).sample
            loss = torch.nn.functional.mse_loss(pred, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
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

    from training.sampling import generate, make_scheduler

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


def main() -> None:
    from tests.fakerun import make_fake_run
    from training.model import build_unet

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        run = make_fake_run(tmp / "run", n_train=64, n_holdout=4, n_samples=1, size=RES, with_model=False)
        write_png_folder(tmp / "pngs", 64)
        model_cfg = _demo_cfg(run.root, 1).model
        base, proj = [], []
        for _ in range(2):
            base.append(baseline_train(tmp / "pngs", model_cfg))
            proj.append(project_train(run.root))
        b, p = max(base), max(proj)
        print(f"training  ({RES} px, batch {BATCH}, demo U-Net, {torch.get_num_threads()} threads)")
        print(f"  baseline (diffusers example loop, fp32, PNG decode, EMA): {b:7.1f} img/s   rounds {[round(x, 1) for x in base]}")
        print(f"  project  (cspine train, bf16, pixel cache, EMA):      {p:7.1f} img/s   rounds {[round(x, 1) for x in proj]}")
        print(f"  ratio project/baseline: {p / b:.2f}x (aim >= 1.5x)")

        torch.manual_seed(0)
        unet = build_unet(model_cfg, RES)
        rounds = [sampling_overheads(unet) for _ in range(2)]
        best = {k: (min if "overhead" in k else max)(r[k] for r in rounds) for k in rounds[0]}
        print("sampling  (50 DDPM steps, 8 images)")
        print(f"  project  generate():           overhead {best['project_overhead']:6.1%}  {best['project_img_s']:.2f} img/s")
        print(f"  baseline DDPMPipeline default: overhead {best['pipeline_overhead']:6.1%}  {best['pipeline_img_s']:.2f} img/s")
        print(f"  ratio project/pipeline images/s: {best['project_img_s'] / best['pipeline_img_s']:.2f}x; "
              f"project overhead {'<' if best['project_overhead'] < 0.05 else '>='} 5% aim")
        if not math.isfinite(p / b):
            raise RuntimeError("training benchmark gave no rate")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
