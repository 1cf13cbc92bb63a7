"""The periodic sample grids of `cspine train` (model/grids/step-N.png): a person's view of progress.

Every ``train.sample_every`` steps and at the end, ``train.grid_images`` images are drawn with the EMA
weights and tiled into one 8-bit PNG. A conditional model's grid is conditional, as its samples will be:
image ``i`` asks for the ``i``-th of the shape model's classes in turn (so each row steps through lordotic ...
kyphotic) with a layout drawn from that class's shape model (:func:`grid_conditions`), without guidance.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cspine import atomic
from cspine.images import png_bytes


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


def grid_conditions(shape_model: dict, n: int, seed: int, resolution: int) -> dict:
    """``classes`` and ``layouts`` (keyword arguments of cspine.generation.sampling.generate) for a conditional grid of
    ``n`` images: the shape model's classes in turn, each image's layout from ``sample_layout`` (stream
    ``(4, k, i)``, as `cspine sample` draws them), and the model's ``map_sigma``."""
    from cspine.generation.shape_model import sample_layout

    ks = sorted(int(k) for k in shape_model.get("classes", {}))
    if not ks:
        return {}
    classes = [ks[i % len(ks)] for i in range(n)]
    layouts = [sample_layout(shape_model, seed, k, i, resolution) for i, k in enumerate(classes)]
    return {"classes": classes, "layouts": layouts, "map_sigma": float(shape_model.get("map_sigma", 1.0))}


def write_grid(ema, unet_template, noise_scheduler, path: Path, n: int, steps: int, seed: int,
               conditions: dict | None = None) -> None:
    """Sample ``n`` images with the EMA weights (ancestral DDPM, ``steps``) and write them as one PNG;
    ``conditions`` (:func:`grid_conditions`) for a conditional model.

    Stochastic DDPM rather than DDIM: early in training the deterministic samplers keep the model's small
    denoising errors as grain, so the grid would look worse than the model is."""
    from training.checkpoints import ema_unet
    from cspine.generation.sampling import generate, make_scheduler

    model = ema_unet(ema, unet_template)
    model.eval().requires_grad_(False)
    images = generate(model, make_scheduler("ddpm", noise_scheduler), range(n), seed, steps,
                      batch_size=min(n, 16), progress=False, **(conditions or {}))
    atomic.write_bytes(path, png_bytes(grid_image(images)))
