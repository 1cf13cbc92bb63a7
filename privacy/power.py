"""How strong was the check that passed? The audit measures its own power on planted copies.

Where it sits: inside `cspine audit` (privacy/audit.py), after each method's threshold is calibrated. A
sample of training images is copied under each transform family below (seeded), the copies are embedded and
searched against the training set exactly like the synthetic images, and each method's calibrated flag rule
is applied to them. The copies exist only in memory for this measurement: they are never written, never
part of samples/, and never released. The result (recall per family and method, whether the copy's own
source was its nearest training image, beside the holdout false-flag rate the calibration implies) goes into
audit/summary.json, summary.md (and so the dataset card) and report.html.

The families: first the small, everyday changes a memorised sample may show (a crop of a few percent, a
brightness/contrast change, noise, JPEG compression, a down-and-up resize, and all but the resize at once);
then issue 10's harder ones, each alone: rotation of 1-5 degrees, a shift of 2-8% of the side, a zoom of
4-10% in or out, a crop of 6-20%, a shear of 2-8%, Gaussian blur, unsharp masking, a median or bilateral
filter, a gamma curve (0.6-1.6), a new window/level (clipped), burned-in text and an "L"/"R" side marker;
and four combinations of a geometric change, a filter, an intensity curve and an overlay. Geometric changes
are taken about the image centre and fill with black what they bring in. Sizes are fractions of the side, so
the families mean the same at 64 and at 256 px. The table reports what each method catches of each; a
family the configured methods do not catch shows a low recall there, and the audit's pass says nothing about
copies of that kind.
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


# -- issue 10: larger geometric changes, filtering, intensity curves, overlays ----------------------------
def _affine(a: np.ndarray, angle: float = 0.0, scale: float = 1.0, shear: float = 0.0, tx: float = 0.0,
            ty: float = 0.0) -> np.ndarray:
    """``a`` rotated by ``angle`` degrees, scaled, sheared (x += shear * y) about its centre and shifted by
    (``tx``, ``ty``) fractions of the side; what falls outside is black (as an exported, re-framed copy)."""
    import cv2

    R = a.shape[0]
    c = (R - 1) / 2.0
    m = np.vstack([cv2.getRotationMatrix2D((c, c), angle, scale), [0, 0, 1]])
    sh = np.array([[1.0, shear, -shear * c], [0, 1, 0], [0, 0, 1]])
    m = (sh @ m)[:2]
    m[:, 2] += (tx * R, ty * R)
    x = cv2.warpAffine(to_unit(a), m, (R, R), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return from_unit(x)


def _sign(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]))


def rotate(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate 1-5 degrees either way."""
    return _affine(a, angle=_sign(rng) * rng.uniform(1.0, 5.0))


def translate(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift by 2-8% of the side (in a random direction), black fill."""
    d, phi = rng.uniform(0.02, 0.08), rng.uniform(0, 2 * np.pi)
    return _affine(a, tx=d * np.cos(phi), ty=d * np.sin(phi))


def scale(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zoom in or out by 4-10% about the centre (zooming out leaves a black frame)."""
    return _affine(a, scale=1.0 + _sign(rng) * rng.uniform(0.04, 0.10))


def crop_large(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crop 6-20% of the side off (random split per axis), resize back."""
    R = a.shape[0]
    c = int(round(R * rng.uniform(0.06, 0.20)))
    top, left = rng.integers(0, c + 1, size=2)
    return resize_gray16(a[top: R - (c - top), left: R - (c - left)], R)


def shear(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shear by 2-8% (either axis, either way)."""
    s = _sign(rng) * rng.uniform(0.02, 0.08)
    if rng.random() < 0.5:
        return _affine(a.T, shear=s).T
    return _affine(a, shear=s)


def blur(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, sigma 0.8-2.5% of the side."""
    from scipy.ndimage import gaussian_filter

    return from_unit(gaussian_filter(to_unit(a), a.shape[0] * rng.uniform(0.008, 0.025), mode="nearest"))


def sharpen(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unsharp mask: amount 0.5-2, radius 1-2% of the side."""
    from scipy.ndimage import gaussian_filter

    x = to_unit(a)
    return from_unit(x + rng.uniform(0.5, 2.0) * (x - gaussian_filter(x, a.shape[0] * rng.uniform(0.01, 0.02))))


def denoise(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A median (3 or 5 px) or a bilateral filter, as denoising tools apply."""
    import cv2

    x = to_unit(a)
    if rng.random() < 0.5:
        return from_unit(cv2.medianBlur(x, int(rng.choice([3, 5]))))
    return from_unit(cv2.bilateralFilter(x, 5, float(rng.uniform(0.05, 0.2)), float(rng.uniform(2.0, 5.0))))


def gamma(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Intensity curve x ** g, g in 0.6-1.6."""
    g = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    return from_unit(to_unit(a) ** g)


def window_level(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new display window: the level moved by up to 15% of the image's range, the width 60-100% of it;
    what falls outside is clipped."""
    x = to_unit(a)
    lo, hi = np.percentile(x, [0.5, 99.5])
    width = (hi - lo) * rng.uniform(0.6, 1.0)
    level = (lo + hi) / 2 + (hi - lo) * rng.uniform(-0.15, 0.15)
    return from_unit((x - (level - width / 2)) / max(width, 1e-6))


def overlay(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Burned-in annotations: a side marker ("L"/"R") in a corner and a line of text (an accession-like
    code or a date) along the top or bottom edge, white or black, each about 10-14% of the side tall."""
    from PIL import ImageDraw, ImageFont

    R = a.shape[0]
    im = Image.fromarray(to_unit(a), mode="F")
    draw = ImageDraw.Draw(im)
    ink = 1.0 if rng.random() < 0.75 else 0.0
    size = max(6, int(round(R * rng.uniform(0.10, 0.14))))
    font = ImageFont.load_default(size=size)
    m = int(round(R * 0.03))
    marker = str(rng.choice(["L", "R"]))
    corner = rng.integers(0, 4)
    x = m if corner % 2 == 0 else R - m - size
    y = m if corner < 2 else R - m - size
    draw.text((x, y), marker, fill=ink, font=font)
    text = (f"{rng.integers(10, 28):02d}/{rng.integers(1, 12):02d}" if rng.random() < 0.5
            else f"ID{rng.integers(1000, 9999)}")
    ty = R - m - size if corner < 2 else m  # the edge the marker is not on
    draw.text((int(rng.uniform(0.2, 0.4) * R), ty), text, fill=ink, font=font)
    return from_unit(np.asarray(im))


def _chain(*fs):
    def f(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for g in fs:
            a = g(a, rng)
        return a
    return f


def geometric_filter(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation + shift + blur + gamma."""
    return _chain(rotate, translate, blur, gamma)(a, rng)


def crop_overlay(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Large crop + sharpen + window/level + burned-in text and marker."""
    return _chain(crop_large, sharpen, window_level, overlay)(a, rng)


def scale_shear_denoise(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zoom + shear + median/bilateral + gamma + JPEG."""
    return _chain(scale, shear, denoise, gamma, jpeg)(a, rng)


def everything(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation + zoom + shift + blur + window/level + overlay + noise: one of each kind at once."""
    return _chain(rotate, scale, translate, blur, window_level, overlay, noise)(a, rng)


#: The families measured, by name: the everyday ones, then issue 10's (each alone, then combined).
FAMILIES = {f.__name__: f for f in (
    crop, brightness_contrast, noise, jpeg, down_up, combined,
    rotate, translate, scale, crop_large, shear, blur, sharpen, denoise, gamma, window_level, overlay,
    geometric_filter, crop_overlay, scale_shear_denoise, everything,
)}


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
