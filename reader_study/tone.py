"""The study's display policy for tone: every served image gets exactly the same intensity histogram.

Part of the reader study's presentation (reader_study.build writes every served file through it, real and
synthetic alike, after the common resize of reader_study.assets and before the common 8-bit encoding).

Why. A Turing test should be decided by the anatomy. Tone is where a generator trained on a few hundred
images differs first and where a person looks first: on the demo the real images' histograms have plateaus
(a flat display shutter, a saturated band) that the samples reproduce only approximately, and the rules
"pick the image with the lowest histogram entropy" or "... the most saturated pixels" found the real image in
86% and 69% of quartets (chance 25%) although the images' anatomy was never looked at. Radiologists read
with a window/level of their choosing anyway; the study fixes one policy for every image instead: *exact
histogram specification* to the study's average histogram. Tone differences between the sets are measured
where they belong, by FID/KID and the classifier two-sample test of `cspine evaluate`, and this module's
choice is written into study/blinding.json and the study's summary.

How (Coltuc, Bolon & Chassery 2006, "Exact histogram specification", IEEE TIP 15(5)):

1. the target is the study's mean quantile function: the average, over all served images, of each image's
   sorted pixel values (all served images have the same size), quantised once to 8 bits;
2. each image's pixels are put into a *strict* order: by value, ties broken by the local means over growing
   square windows (:data:`TIE_WINDOWS`, 3 to 257 px), and any tie left (the inside of a perfectly flat
   region) by a fixed pseudo-random key, so no raster pattern appears;
3. the i-th pixel in that order gets the i-th target value.

The map is monotone in the image's own values (it never reorders two pixels of different intensity), so the
anatomy, edges and texture are kept; only the tone curve changes, and after it every served file holds the
same multiset of 8-bit values: mean, contrast, skewness, entropy, black and saturated share are identical by
construction, so no rule on them can pick the real image. The price: a large, nearly flat area (a display
shutter, air) is spread over the target's range, so its faint noise shows as grain (README, reader study).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from scipy.ndimage import uniform_filter

#: Window sizes (px) of the local means that break ties between pixels of equal value, in order of use.
TIE_WINDOWS: tuple[int, ...] = (3, 5, 9, 17, 33, 65, 129, 257)


def strict_order(img: np.ndarray, seed: int | Iterable[int] = 0) -> np.ndarray:
    """Flat indices of ``img``'s pixels in strictly increasing order: by value, then by the local means of
    :data:`TIE_WINDOWS`, then by a pseudo-random key drawn from ``seed``."""
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    x = np.asarray(img, dtype=np.float64)
    keys = [np.random.default_rng(seed).random(x.size)]
    keys += [uniform_filter(x, size=w, mode="reflect").ravel() for w in reversed(TIE_WINDOWS)]
    keys.append(x.ravel())
    return np.lexsort(keys)  # the last key sorts first


def target_values(images: Iterable[np.ndarray]) -> np.ndarray:
    """The common 8-bit histogram as a sorted uint8 vector: the mean of the images' sorted values (floats in
    [0, 1], all of one shape), quantised. Streams: one image in memory at a time."""
    total, shape, n = None, None, 0
    for img in images:
        if shape is None:
            shape, total = img.shape, np.zeros(img.size, dtype=np.float64)
        elif img.shape != shape:
            raise ValueError(f"every image must have the same shape for a common histogram: {img.shape} != {shape}")
        total += np.sort(np.asarray(img, dtype=np.float64), axis=None)
        n += 1
    if n == 0:
        raise ValueError("no images to take the common histogram from")
    return np.rint(np.clip(total / n, 0.0, 1.0) * 255.0).astype(np.uint8)


def specify(img: np.ndarray, target: np.ndarray, seed: int | Iterable[int] = 0) -> np.ndarray:
    """``img`` (float in [0, 1]) with exactly the histogram of ``target`` (sorted uint8, one value per pixel):
    uint8, same shape."""
    if target.size != img.size:
        raise ValueError(f"the target holds {target.size} values for an image of {img.size} pixels")
    out = np.empty(img.size, dtype=np.uint8)
    out[strict_order(img, seed)] = target
    return out.reshape(img.shape)
