"""Reproducible image generation from a trained U-Net: the sampling core every later stage calls.

Sits between ``cspine train`` (which writes ``model/pipeline`` and ``model/checkpoints/step-N/unet_ema``)
and everything that needs synthetic images: ``cspine sample`` (training.sample), the periodic training
grids, evaluation's checkpoint and sampler curves and the benchmarks. It lives in the core (cspine.generation)
because three stages call it and none may import another's internals.

The guarantee: synthetic image ``i`` depends only on ``(seed, i)``. Each index gets its own
``torch.Generator`` (seeded from ``SeedSequence([seed, i])``, cspine.generation.seeds; on the CPU so a GPU gives the
same draws), which draws the initial noise *and* every stochastic step's noise for that image alone. So the
batch size, the shard and the process an index lands on change nothing but floating-point rounding in the
U-Net's batched convolutions (see tests/training/test_sample.py, BATCH_TOLERANCE, for the tolerance).

Conditional models (a U-Net with a class embedding and/or layout channels, cspine/generation/hub_pipeline.py): each
index may carry a curvature class ``k`` and a keypoint layout [23, 2]. Image ``i`` of class ``k`` then depends
only on ``(seed, k, i)``: its generator is seeded by stream ``(3, k, i)`` (the layout itself is drawn by the
caller from stream ``(4, k, i)``, cspine.generation.shape_model). An index without a class samples the null class and an
empty layout with stream ``(i,)``, exactly as an unconditional model. ``guidance_scale`` is classifier-free
guidance (:func:`cspine.generation.hub_pipeline.guided_noise`; 1 = plain conditional, one U-Net pass).

Schedulers (:func:`make_scheduler`): DDPM (ancestral, clips x0 to [-1, 1]), DDIM (eta 0, clips x0) and
DPM-Solver++ (2nd order multistep). DPM-Solver++ built from a DDPM config does not clip and diverges in
pixel space, so it is built with ``thresholding=True, sample_max_value=1.0``.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cspine.config import SAMPLER_NAMES
from cspine.rundir import RunDir
from cspine.generation.hub_pipeline import NULL_CLASS, guided_noise, render_layout, unet_conditions
from cspine.generation.seeds import stream_seed

SCHEDULERS = SAMPLER_NAMES


def index_generators(seed: int, indices: Sequence[int], classes: Sequence[int | None] | None = None) -> list[torch.Generator]:
    """One CPU generator per index ``i``: stream ``(i,)`` of cspine.generation.seeds, or ``(3, k, i)`` for class ``k``."""
    classes = classes if classes is not None else [None] * len(indices)
    return [torch.Generator("cpu").manual_seed(stream_seed(seed, i) if k is None else stream_seed(seed, 3, k, i))
            for i, k in zip(indices, classes)]


def _conditions(unet, classes, layouts, n: int, device, map_sigma: float = 1.0) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(class labels [n] or None, layout maps [n, C, R, R] or None) for a batch, as the U-Net takes them."""
    has_classes, n_maps = unet_conditions(unet)
    if classes is not None and any(k is not None for k in classes) and not has_classes:
        raise ValueError("classes given, but the U-Net has no class embedding (an unconditional model)")
    labels = None
    if has_classes:
        ks = classes if classes is not None else [None] * n
        labels = torch.tensor([NULL_CLASS if k is None else int(k) for k in ks], device=device)
    maps = None
    if n_maps:
        size = unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        pts = torch.full((n, 23, 2), float("nan"))
        for j, lay in enumerate(layouts if layouts is not None else [None] * n):
            if lay is not None:
                pts[j] = torch.as_tensor(np.asarray(lay), dtype=torch.float32)
        sigma = map_sigma * size / 64
        maps = render_layout(pts, size, sigma).to(device)
    return labels, maps


# -- loading ---------------------------------------------------------------------------------------

def load_unet(run: RunDir, checkpoint: str = "final", device: str | torch.device = "cpu"):
    """The EMA U-Net of a run: ``"final"`` is model/pipeline/unet, ``"step-N"`` is that checkpoint's unet_ema/.

    Loads safetensors only (never a pickle). Returns the model in eval mode on ``device``.
    """
    from diffusers import UNet2DModel

    folder = run.unet_folder(checkpoint)
    if not (folder / "config.json").is_file():
        stage = "train" if checkpoint == "final" else f"train (checkpoint {checkpoint} is not in {run.checkpoints})"
        raise FileNotFoundError(f"{folder} has no saved U-Net: run `cspine {stage}` first (run directory {run.root})")
    unet = UNet2DModel.from_pretrained(folder, use_safetensors=True)
    return unet.to(device).eval().requires_grad_(False)


def _scheduler_config(source: Any) -> dict[str, Any]:
    """A noise-scheduler config dict from a run, a scheduler, a config mapping or a ModelConfig."""
    from diffusers import DDPMScheduler
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    if isinstance(source, SchedulerMixin):
        return dict(source.config)
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, (str, Path)):
        source = RunDir(Path(source))
    if isinstance(source, RunDir):
        candidates = [source.pipeline / "scheduler" / "scheduler_config.json"]
        newest_first = reversed(source.checkpoint_steps(complete_marker="scheduler/scheduler_config.json"))
        candidates += [source.checkpoint(step) / "scheduler" / "scheduler_config.json" for step in newest_first]
        for path in candidates:
            if path.is_file():
                return json.loads(path.read_text(encoding="utf-8"))
        raise FileNotFoundError(f"no scheduler config in {source.root} (model/pipeline or a checkpoint): "
                                "run `cspine train` first")
    if hasattr(source, "num_train_timesteps") and hasattr(source, "beta_schedule"):  # ModelConfig
        return dict(DDPMScheduler(**noise_scheduler_kwargs(source)).config)
    raise TypeError(f"cannot get a scheduler config from {type(source).__name__}")


def noise_scheduler_kwargs(model_cfg) -> dict[str, Any]:
    """DDPMScheduler keyword arguments of a model config section (training.config.ModelConfig, read by
    attribute: the core does not import the stage that defines it)."""
    return dict(
        num_train_timesteps=model_cfg.num_train_timesteps,
        beta_schedule=model_cfg.beta_schedule,
        prediction_type=model_cfg.prediction_type,
        rescale_betas_zero_snr=getattr(model_cfg, "zero_terminal_snr", False),
        clip_sample=True,
        clip_sample_range=1.0,
    )


def make_scheduler(name: str, config: Any, **overrides: Any):
    """A fresh inference scheduler ``name`` (one of SCHEDULERS) from the training config.

    ``config``: a RunDir (reads model/pipeline/scheduler or the newest checkpoint's), a run folder path, a
    scheduler instance (e.g. ``pipeline.scheduler``), a scheduler config mapping, or a ModelConfig.
    DDPM and DDIM clip the predicted clean image to [-1, 1]; the multistep solvers (DPM-Solver++ 2M, its
    stochastic SDE variant, UniPC with its corrector) use thresholding with ``sample_max_value=1.0`` (without
    it they diverge in pixel space) and trailing timesteps; ``-karras`` spaces the steps by Karras et al.'s
    sigmas (denser at low noise), from EDM's sigma_max of 80 (or the chain's largest sigma when smaller): the
    cosine chain ends at sigma ~20,000, and a Karras spacing from there put 11 of 25 steps on timestep 998,
    which diffusers' solvers then stepped past the end of their sigmas (IndexError). ``overrides`` go to
    ``from_config``.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    base = {k: v for k, v in _scheduler_config(config).items() if not k.startswith("_")}
    solver = dict(solver_order=2, thresholding=True, sample_max_value=1.0, dynamic_thresholding_ratio=0.995,
                  lower_order_final=True, timestep_spacing="trailing")
    family, _, variant = name.partition("-")
    if name == "ddpm":
        opts, cls = dict(clip_sample=True, clip_sample_range=1.0), DDPMScheduler
    elif name == "ddim":
        opts = dict(clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, timestep_spacing="trailing")
        cls = DDIMScheduler
    elif family in ("dpmsolver++", "dpmsolver") and variant in ("", "karras", "sde", "sde-karras"):
        algorithm = "sde-dpmsolver++" if variant.startswith("sde") else "dpmsolver++"
        opts, cls = dict(solver, algorithm_type=algorithm), DPMSolverMultistepScheduler
    elif family == "unipc" and variant in ("", "karras"):
        opts, cls = dict(solver, predict_x0=True, solver_type="bh2", disable_corrector=[]), UniPCMultistepScheduler
    else:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    if variant.endswith("karras"):
        opts["use_karras_sigmas"] = True
    if base.get("rescale_betas_zero_snr") and cls in (DDPMScheduler, DDIMScheduler):
        opts["timestep_spacing"] = "trailing"  # start at the last, pure-noise timestep (Lin et al. 2024)
    opts.update(overrides)
    sched = cls.from_config({**base, **opts})
    if variant.endswith("karras"):
        ab = sched.alphas_cumprod[-1].item()
        sched.register_to_config(sigma_max=min(KARRAS_SIGMA_MAX, ((1 - ab) / ab) ** 0.5))
    return sched


#: The largest noise level of a Karras spacing (Karras et al. 2022's sigma_max for images in [-1, 1]).
KARRAS_SIGMA_MAX = 80.0


# -- generation ------------------------------------------------------------------------------------

def _step_kwargs(scheduler) -> set[str]:
    return set(inspect.signature(scheduler.step).parameters)


@torch.no_grad()
def generate_batch(unet, scheduler, indices: Sequence[int], seed: int, steps: int, progress_bar=None,
                   clamp: bool = True, classes: Sequence[int | None] | None = None, layouts: Sequence | None = None,
                   guidance_scale: float = 1.0, map_sigma: float = 1.0) -> torch.Tensor:
    """Denoise one batch; returns float32 [n, R, R] in [0, 1] on the CPU. ``scheduler`` is not modified.

    ``clamp=False`` returns the final sample unclamped (still mapped by x/2 + 0.5), for range checks.
    ``classes`` (class per index, None = null) and ``layouts`` (keypoints [23, 2] per index, or None) condition a
    conditional U-Net; without them it samples unconditionally. ``map_sigma``: the run's blob radius at 64 px
    (model.condition.map_sigma, kept in model/shape_model.json).
    """
    from diffusers.utils.torch_utils import randn_tensor

    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(steps)
    device = unet.device
    dtype = unet.dtype
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    gens = index_generators(seed, indices, classes)
    x = randn_tensor((len(indices), unet.config.out_channels, *size), generator=gens, device=device, dtype=dtype)
    x = x * sched.init_noise_sigma
    labels, maps = _conditions(unet, classes, layouts, len(indices), device, map_sigma)
    accepts_generator = "generator" in _step_kwargs(sched)
    for t in sched.timesteps:
        model_in = sched.scale_model_input(x, t)
        eps = guided_noise(unet, model_in, t, labels, maps, guidance_scale)
        if accepts_generator:
            x = sched.step(eps, t, x, generator=gens).prev_sample
        else:
            x = sched.step(eps, t, x).prev_sample
        if progress_bar is not None:
            progress_bar.update(1)
    out = x.float() / 2 + 0.5
    if clamp:
        out = out.clamp(0, 1)
    return out[:, 0].cpu()


def generate(
    unet,
    scheduler,
    indices: Sequence[int],
    seed: int,
    steps: int,
    batch_size: int = 16,
    progress: bool = True,
    classes: Sequence[int | None] | None = None,
    layouts: Sequence | None = None,
    guidance_scale: float = 1.0,
    map_sigma: float = 1.0,
) -> np.ndarray:
    """Synthetic images ``indices`` of a run with sampling ``seed``: float32 [n, R, R] in [0, 1].

    Image ``i`` depends only on ``(seed, i)`` (per-index generators for the initial and every step's
    noise), or on ``(seed, k, i)`` with ``classes[j] = k``, not on ``batch_size`` or on which other indices
    are in the call. ``classes``, ``layouts`` and ``guidance_scale``: see :func:`generate_batch`.
    """
    from tqdm.auto import tqdm

    indices = [int(i) for i in indices]
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not indices:
        size = unet.config.sample_size
        return np.zeros((0, size, size), dtype=np.float32)
    classes = list(classes) if classes is not None else [None] * len(indices)
    layouts = list(layouts) if layouts is not None else [None] * len(indices)
    spans = [range(k, min(k + batch_size, len(indices))) for k in range(0, len(indices), batch_size)]
    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(steps)
    n_steps = len(sched.timesteps)
    bar = tqdm(total=len(spans) * n_steps, desc=f"sampling {len(indices)} images", unit="step",
               disable=not progress, leave=False)
    try:
        out = [generate_batch(unet, scheduler, [indices[j] for j in b], seed, steps, bar,
                              classes=[classes[j] for j in b], layouts=[layouts[j] for j in b],
                              guidance_scale=guidance_scale, map_sigma=map_sigma) for b in spans]
    finally:
        bar.close()
    return torch.cat(out).numpy().astype(np.float32, copy=False)
