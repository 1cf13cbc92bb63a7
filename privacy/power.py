"""How strong was the check that passed? The audit measures its own power on planted copies.

Where it sits: inside `cspine audit` (privacy/audit.py), after each method's threshold is calibrated. A
sample of training images is copied under each transform family below (seeded), the copies are embedded and
searched against the training set exactly like the synthetic images, and each method's calibrated flag rule
is applied to them. The copies exist only in memory for this measurement: they are never written, never
part of samples/, and never released. The result (recall per family and method, whether the copy's own
source was its nearest training image, beside the holdout false-flag rate the calibration implies) goes into
audit/summary.json, summary.md (and so the dataset card) and report.html.

The families are the small, everyday changes a memorised sample may show: a crop of a few percent, a
brightness/contrast change, noise, JPEG compression, a down-and-up resize, and all but the resize at once.
They are what the audit is built to catch today; larger geometric changes, filtering and overlays (issue 10)
are not yet among them, and the table says only what it measured.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cspine.images import from_unit, resize_gray16, to_unit


def crop(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crop 2-5% off the sides (random split), resize back."""
    R = a.shape[0]
    c = max(1, int(round(R * rng.uniform(0.02, 0.05))))
    top, left = rng.integers(0, c + 1, size=2)
    return resize_gray16(a[top: R - (c - top), left: R - (c - left)], R)


def brightness_contrast(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = to_unit(a)
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-0.07, 0.07)
    return from_unit((x - x.mean()) * gain + x.mean() + bias)


def noise(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return from_unit(to_unit(a) + rng.normal(0, rng.uniform(0.01, 0.03), a.shape))


def jpeg(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(from_unit(to_unit(a), 8)).save(buf, format="JPEG", quality=int(rng.integers(50, 86)))
    return from_unit(np.asarray(Image.open(buf), dtype=np.float32) / 255.0)


def down_up(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    R = a.shape[0]
    return resize_gray16(resize_gray16(a, int(round(R * rng.uniform(0.5, 0.8)))), R)


def combined(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    for f in (crop, brightness_contrast, noise, jpeg):
        a = f(a, rng)
    return a


#: The families measured, by name.
FAMILIES = {f.__name__: f for f in (crop, brightness_contrast, noise, jpeg, down_up, combined)}


def plant(train: np.ndarray, per_family: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``per_family`` copies of random training images under each family: (images, source index, family)."""
    rng = np.random.default_rng(seed)
    images, sources, names = [], [], []
    for name, f in FAMILIES.items():
        src = rng.choice(len(train), size=per_family, replace=per_family > len(train))
        for s in src:
            images.append(f(train[s], rng))
            sources.append(int(s))
            names.append(name)
    empty = np.zeros((0,) + train.shape[1:], np.uint16)
    return (np.stack(images) if images else empty), np.asarray(sources, dtype=np.int64), names


def recall_table(flags: dict[str, np.ndarray], flagged: np.ndarray, found: dict[str, np.ndarray],
                 names: list[str]) -> dict:
    """Per family: the share of copies each method flags, the share the audit's rule flags, and the share
    whose nearest training image (per method) is its own source."""
    names_a = np.asarray(names)
    out = {}
    for fam in FAMILIES:
        sel = names_a == fam
        if not sel.any():
            continue
        out[fam] = {"n": int(sel.sum()), "audit": round(float(flagged[sel].mean()), 4),
                    **{m: round(float(v[sel].mean()), 4) for m, v in flags.items()},
                    "source_found": {m: round(float(v[sel].mean()), 4) for m, v in found.items()}}
    return out
