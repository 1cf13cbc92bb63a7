"""The conditional pipeline, the landmark-layout renderer and the guided denoising step: one self-contained file.

Where it sits: `cspine train` copies this file, unchanged, into model/pipeline/pipeline.py (and `cspine package`
into release/model), and model_index.json names it (``"_class_name": ["pipeline", "CSpineConditionalPipeline"]``),
so ``DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`` loads it with stock diffusers (diffusers'
documented mechanism for a pipeline class shipped in the repo). The project's own sampler
(cspine.generation.sampling) and the training loop (training.train) import the same functions, so training, `cspine
sample` and the released pipeline render the same layout maps and combine guidance the same way. It may
import only torch, numpy and diffusers.

Conditioning (why this design). The U-Net gets two conditions:

- the curvature class through diffusers' class embedding (``num_class_embeds = 6``: index 0 is the "null"
  class, 1-5 the CSXA classes, so the index *is* the class number), added to the timestep embedding;
- a landmark layout: the 23 keypoints rendered as :data:`MAP_CHANNELS` extra input channels concatenated to the
  noisy image (channel 0: a Gaussian blob at every point; channel 1: the filled vertebral bodies, C2 as the
  triangle centroid/bottom corners, C3-C7 as the quadrilaterals of their four corners). An all-zero map
  means "no layout".

A spatial map, rather than a vector of 46 coordinates through an embedding, puts each landmark where the
convolutions already look: the model learns "draw an endplate here", which a 64 px U-Net learns in a few
hundred steps, and the image's landmarks are then known by construction (they are the layout it was drawn
from). At sampling time the layout comes from a statistical shape model (mean + PCA modes per class, fitted to
the training keypoints: cspine.generation.shape_model), so every synthetic image ships with its 23 named points. With
probability ``drop_prob`` training replaces class *and* layout together by null/zeros (classifier-free
guidance training), so one model samples unconditionally, class-only, or class + layout. Guidance
(:func:`guided_noise`) is ``eps_u + w (eps_c - eps_u)``, the unconditional branch being null class and zero
map; ``w = 1`` is the plain conditional model (one forward pass, no unconditional branch).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

#: Extra input channels of a layout-conditioned U-Net.
MAP_CHANNELS = 2
#: Class index of "no class" (the class embedding's null row).
NULL_CLASS = 0
#: Curvature class names by class number (CSXA); 0 is the null class.
CLASS_NAMES = {1: "lordotic", 2: "straight", 3: "sigmoid", 4: "reverse sigmoid", 5: "kyphotic"}


# -- layout maps -----------------------------------------------------------------------------------

def _polygons(n_points: int) -> list[list[int]]:
    """Vertex indices (in order around the outline) of the vertebral bodies, for the 23-point CSXA order:
    C2 centroid, C2 bottom left, C2 bottom right, then per C3..C7 top left, top right, bottom left, bottom right."""
    polys = [[0, 2, 1]] if n_points >= 3 else []
    for base in range(3, n_points - 3, 4):
        polys.append([base, base + 1, base + 3, base + 2])
    return polys


def render_layout(points: torch.Tensor, resolution: int, sigma: float) -> torch.Tensor:
    """Layout maps [n, MAP_CHANNELS, R, R] in [0, 1] of keypoints ``points`` [n, P, 2] (x, y in pixels, pixel
    centres at integers). A row with any NaN coordinate (no keypoints) gives an all-zero map."""
    n, p, _ = points.shape
    device = points.device
    missing = torch.isnan(points).any(dim=(1, 2))
    pts = torch.nan_to_num(points.float(), nan=-1e4)
    coords = torch.arange(resolution, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    out = torch.zeros(n, MAP_CHANNELS, resolution, resolution, device=device)
    if n == 0:
        return out
    dx = xx[None, None] - pts[:, :, 0, None, None]
    dy = yy[None, None] - pts[:, :, 1, None, None]
    out[:, 0] = torch.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)).amax(dim=1)
    for poly in _polygons(p):
        v = pts[:, poly]  # [n, k, 2]
        w = torch.roll(v, -1, dims=1)
        cross = ((w[..., 0] - v[..., 0])[..., None, None] * (yy - v[..., 1, None, None])
                 - (w[..., 1] - v[..., 1])[..., None, None] * (xx - v[..., 0, None, None]))  # [n, k, R, R]
        inside = (cross > 0).all(dim=1) | (cross < 0).all(dim=1)  # strict: a degenerate polygon is empty
        out[:, 1] = torch.maximum(out[:, 1], inside.float())
    out[missing] = 0
    return out


def layout_from_z(shape_model: dict, curvature: int, z: Sequence[float], resolution: int | None = None) -> np.ndarray:
    """Keypoints [P, 2] of class ``curvature`` for mode coefficients ``z`` (standard normal draws, clipped to
    +-3): ``mean + sum_j z_j * stddev_j * component_j``, scaled from the model's frame to ``resolution``."""
    cls = shape_model["classes"][str(int(curvature))]
    mean = np.asarray(cls["mean"], dtype=np.float64)
    comps = np.asarray(cls["components"], dtype=np.float64).reshape(-1, mean.size)
    std = np.asarray(cls["stddev"], dtype=np.float64)
    z = np.clip(np.asarray(z, dtype=np.float64)[: len(std)], -3.0, 3.0)
    flat = mean + (z * std) @ comps if len(std) else mean
    pts = flat.reshape(-1, 2)
    if resolution is not None and resolution != shape_model["resolution"]:
        s = resolution / shape_model["resolution"]
        pts = (pts + 0.5) * s - 0.5
    return pts


# -- guidance ---------------------------------------------------------------------------------------

def model_input(x: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
    """The U-Net's input: the noisy image, with the layout maps concatenated when the U-Net takes them."""
    return x if maps is None else torch.cat([x, maps.to(dtype=x.dtype, device=x.device)], dim=1)


def guided_noise(unet, x: torch.Tensor, t, class_labels: torch.Tensor | None, maps: torch.Tensor | None,
                 guidance_scale: float = 1.0) -> torch.Tensor:
    """The U-Net's prediction for ``x`` at ``t`` under classifier-free guidance.

    ``class_labels`` [n] (0 = null) is None for a U-Net without class embedding; ``maps`` [n, C, R, R] is
    None for one without layout channels. ``guidance_scale == 1``: one conditional pass. Otherwise the
    conditional and the unconditional (null class, zero map) halves go through one batched pass."""
    if guidance_scale == 1.0 or (class_labels is None and maps is None):
        return unet(model_input(x, maps), t, class_labels=class_labels).sample
    labels2 = None if class_labels is None else torch.cat([class_labels, torch.full_like(class_labels, NULL_CLASS)])
    maps2 = None if maps is None else torch.cat([maps, torch.zeros_like(maps)])
    out = unet(model_input(torch.cat([x, x]), maps2), t, class_labels=labels2).sample
    cond, uncond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def unet_conditions(unet) -> tuple[bool, int]:
    """(has a class embedding, number of layout channels) of a U-Net, read from its config."""
    classes = getattr(unet.config, "num_class_embeds", None) is not None
    return classes, int(unet.config.in_channels) - int(unet.config.out_channels)


# -- the released pipeline ------------------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

from diffusers import DiffusionPipeline  # noqa: E402
from diffusers.utils import BaseOutput  # noqa: E402


@dataclass
class CSpinePipelineOutput(BaseOutput):
    """Images (PIL list or numpy [n, R, R, 1]), each one's keypoints ({label: [x, y]} or None) and class."""

    images: Any
    keypoints: list
    curvature: list


class CSpineConditionalPipeline(DiffusionPipeline):
    """Curvature-class (and landmark-layout) conditional DDPM for lateral cervical-spine radiographs.

    ``pipe(curvature=3, num_images=4, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))``
    returns ``.images`` (PIL, or numpy [n, R, R, 1] in [0, 1] with ``output_type="np"``), ``.keypoints`` (per
    image a dict {label: [x, y]} in the image's pixels, or None) and ``.curvature``. ``keypoints=`` takes the
    layout to draw (a dict {label: [x, y]} or a list of them); otherwise one is drawn from the shipped shape
    model of the class. ``curvature=None`` samples unconditionally (null class, no layout).
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet, scheduler, shape_model: dict | None = None, map_sigma: float = 1.0):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(shape_model=shape_model, map_sigma=map_sigma)

    def _layouts(self, curvature: list, keypoints, generator, size: int) -> torch.Tensor:
        sm = self.config.shape_model
        labels = list(sm["labels"]) if sm else None
        n = len(curvature)
        if keypoints is not None:
            kps = [keypoints] * n if isinstance(keypoints, dict) else list(keypoints)
            if len(kps) != n:
                raise ValueError(f"got {len(kps)} keypoint layouts for {n} images")
            names = labels or list(kps[0])
            return torch.tensor([[kp[name] for name in names] for kp in kps], dtype=torch.float32)
        out = torch.full((n, len(labels) if labels else 23, 2), float("nan"))
        for j, k in enumerate(curvature):
            if k is not None and sm:
                gen = generator[j] if isinstance(generator, list) else generator
                z = torch.randn(len(sm["classes"][str(k)]["stddev"]), generator=gen).numpy()
                out[j] = torch.from_numpy(layout_from_z(sm, k, z, size)).float()
        return out

    @torch.no_grad()
    def __call__(self, curvature: int | Sequence[int | None] | None = None, num_images: int = 1,
                 keypoints: dict | list[dict] | None = None, guidance_scale: float = 1.0,
                 num_inference_steps: int = 1000, generator: torch.Generator | list | None = None,
                 output_type: str = "pil", return_dict: bool = True) -> Any:
        unet = self.unet
        has_classes, n_maps = unet_conditions(unet)
        curv = list(curvature) if isinstance(curvature, (list, tuple)) else [curvature] * num_images
        for k in curv:
            if k is not None and int(k) not in CLASS_NAMES:
                raise ValueError(f"curvature must be 1-5 ({CLASS_NAMES}) or None, got {k!r}")
        n = len(curv)
        size = unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        shape = (n, unet.config.out_channels, size, size)
        from diffusers.utils.torch_utils import randn_tensor

        x = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=unet.dtype)
        pts = self._layouts(curv, keypoints, generator, size) if n_maps else None
        if pts is not None:
            pts[[k is None for k in curv]] = float("nan")
        maps = None if pts is None else render_layout(pts, size, self.config.map_sigma * size / 64).to(x.device)
        labels = (torch.tensor([NULL_CLASS if k is None else int(k) for k in curv], device=x.device)
                  if has_classes else None)
        self.scheduler.set_timesteps(num_inference_steps)
        x = x * self.scheduler.init_noise_sigma
        for t in self.progress_bar(self.scheduler.timesteps):
            eps = guided_noise(unet, self.scheduler.scale_model_input(x, t), t, labels, maps, guidance_scale)
            x = self.scheduler.step(eps, t, x, generator=generator).prev_sample
        images = (x / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
        if output_type == "pil":
            images = self.numpy_to_pil(images)
        names = list(self.config.shape_model["labels"]) if self.config.shape_model else None
        kps = [None if pts is None or torch.isnan(pts[j]).any() or names is None
               else {name: [round(float(a), 3), round(float(b), 3)] for name, (a, b) in zip(names, pts[j].tolist())}
               for j in range(n)]
        if not return_dict:
            return images, kps, curv
        return CSpinePipelineOutput(images=images, keypoints=kps, curvature=curv)
