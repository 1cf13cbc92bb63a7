"""Test data for the audit: phantom radiographs and planted near-copies of training images.

Real radiographs cannot be shipped with tests, so training, holdout and "distinct synthetic" images are
procedural phantoms of *different patients* (training/phantom), rendered small and resized to R x R.
Planted copies are training images after one small change each (cycled): a crop of a few percent, a
brightness/contrast change, noise, JPEG compression, a down-and-up resize; ``combined`` (crop, brightness,
noise and JPEG at once) is a harder extra, reported separately.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from privacy.power import brightness_contrast, crop, down_up, jpeg, noise


def phantoms(n: int, seed: int, size: int = 64) -> np.ndarray:
    """``n`` phantom radiographs of ``n`` different cases, uint16 [n, size, size]."""
    from training.phantom import make_image, plan_images

    out = np.empty((n, size, size), dtype=np.uint16)
    for i, plan in enumerate(plan_images(n, n, seed)):
        img = make_image(seed, plan, 2 * size, int(1.6 * size))[0]
        out[i] = resize(img, size)
    return out


def resize(a: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """uint16 image resized (bicubic) to ``size`` (side or (h, w))."""
    h, w = (size, size) if isinstance(size, int) else size
    im = Image.fromarray(a.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BICUBIC)
    return np.rint(np.clip(np.asarray(im), 0, 65535)).astype(np.uint16)


#: the small changes the audit must catch (the issue's list), one per planted copy, cycled
TRANSFORMS = (crop, brightness_contrast, noise, jpeg, down_up)


def plant(train: np.ndarray, n: int, seed: int, transforms=TRANSFORMS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` modified copies of random training images: (images, source training index, transform name)."""
    rng = np.random.default_rng(seed)
    src = rng.choice(len(train), size=n, replace=n > len(train))
    out = np.empty((n,) + train.shape[1:], dtype=np.uint16)
    names = []
    for i, s in enumerate(src):
        f = transforms[i % len(transforms)]
        out[i] = f(train[s], rng)
        names.append(f.__name__)
    return out, src, names
