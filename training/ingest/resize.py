"""Aspect-preserving resize with padding to the model's square resolution, and the same map for keypoints.

Part of ingestion (``cspine prepare``): every image goes into the pixel cache at ``data.resolution``
once, so training never decodes a file. The long side is scaled to the resolution with Pillow's
antialiased Lanczos filter on a float image (no 8-bit rounding), the short side is centred and padded
with black (air). :class:`Fit` maps source pixel coordinates to cache coordinates (pixel centres).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cspine.images import from_unit


@dataclass(frozen=True)
class Fit:
    """How a source image of ``width`` x ``height`` sits in the ``size`` x ``size`` cache image."""

    width: int
    height: int
    size: int
    new_width: int
    new_height: int
    pad_x: int
    pad_y: int

    def point(self, x: float, y: float) -> tuple[float, float]:
        """Source pixel coordinates (x right, y down, pixel centres at integers) to cache coordinates."""
        sx, sy = self.new_width / self.width, self.new_height / self.height
        return (x + 0.5) * sx - 0.5 + self.pad_x, (y + 0.5) * sy - 0.5 + self.pad_y


def plan_fit(width: int, height: int, size: int) -> Fit:
    scale = size / max(width, height)
    nw = min(size, max(1, int(round(width * scale))))
    nh = min(size, max(1, int(round(height * scale))))
    return Fit(width, height, size, nw, nh, (size - nw) // 2, (size - nh) // 2)


def fit_square(img: np.ndarray, size: int) -> tuple[np.ndarray, Fit]:
    """float32 [H, W] in [0, 1] -> (uint16 [size, size], Fit)."""
    h, w = img.shape
    fit = plan_fit(w, h, size)
    if (fit.new_width, fit.new_height) == (w, h):
        small = img.astype(np.float32)
    else:
        im = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
        small = np.asarray(im.resize((fit.new_width, fit.new_height), Image.Resampling.LANCZOS, reducing_gap=3.0))
    out = np.zeros((size, size), np.float32)
    out[fit.pad_y : fit.pad_y + fit.new_height, fit.pad_x : fit.pad_x + fit.new_width] = small
    return from_unit(out, 16), fit
