"""A measurable rule for "washed-out" images: contrast below what real radiographs of the set show.

Where it sits: a quality statistic of `cspine evaluate` (and of the training-recipe table,
``python -m bench.recipes``). An image is washed out when the standard deviation of its intensities (in
[0, 1]) is below the ``quantile`` (default 1%) of the same statistic over the real training images: a
flat, grey, low-contrast image that no real image of the set resembles. By construction about 1% of real
images from the same distribution fall under the line, so the share among real held-out images is the
reference a synthetic set is compared with.
"""

from __future__ import annotations

import numpy as np


def contrast(pixels: np.ndarray) -> np.ndarray:
    """Per-image standard deviation of intensities in [0, 1] (uint16 or unit float input, [n, H, W])."""
    x = np.asarray(pixels)
    x = x.astype(np.float64) / 65535.0 if x.dtype == np.uint16 else x.astype(np.float64)
    return x.reshape(len(x), -1).std(axis=1)


def threshold(real_train: np.ndarray, quantile: float = 0.01) -> float:
    """The contrast below which an image counts as washed out, from the real training images."""
    return float(np.quantile(contrast(real_train), quantile))


def washed_out_share(pixels: np.ndarray, line: float) -> float:
    """Share of ``pixels``' images whose contrast is below ``line``."""
    c = contrast(pixels)
    return float((c < line).mean()) if len(c) else float("nan")
