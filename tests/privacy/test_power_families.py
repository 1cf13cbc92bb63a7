"""The change families of privacy/power.py do what their names say, on realistic 64 px phantoms (rendered by
training/phantom and cropped as `cspine prepare` does): each keeps shape and dtype, is reproducible from its
seed, and changes the image the way it should, checked against an independent measurement (the rotation
angle and the shift recovered by OpenCV's ECC registration, the gamma exponent recovered by a log-log fit, the
overlay's ink confined to the text rows)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cspine.images import to_unit
from privacy import power


def realistic(n: int, seed: int, size: int = 64) -> np.ndarray:
    """Phantoms rendered at 256 x 200 and square-cropped around the anatomy to ``size`` (the prepare step)."""
    from training.ingest.resize import anatomy_centre, fit_square
    from training.phantom import make_image, plan_images

    out = np.empty((n, size, size), np.uint16)
    for i, plan in enumerate(plan_images(n, n, seed)):
        img, pts, _, _ = make_image(seed, plan, 256, 200)
        out[i] = fit_square(to_unit(img), size, anatomy_centre(pts))[0]
    return out


IMAGES = realistic(6, seed=3)


@pytest.mark.parametrize("name", list(power.FAMILIES))
def test_family_changes_the_image_reproducibly(name):
    f = power.FAMILIES[name]
    a = IMAGES[0]
    out = f(a, np.random.default_rng(1))
    assert out.shape == a.shape and out.dtype == np.uint16
    assert np.array_equal(out, f(a, np.random.default_rng(1)))
    assert np.abs(to_unit(out) - to_unit(a)).mean() > 1e-3, "the copy is unchanged"


def _ecc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine warp taking ``b`` back onto ``a`` (OpenCV ECC)."""
    w = np.eye(2, 3, dtype=np.float32)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    _, w = cv2.findTransformECC(to_unit(a), to_unit(b), w, cv2.MOTION_AFFINE, crit, None, 3)
    return w


def test_rotation_and_shift_are_the_stated_size():
    for i, a in enumerate(IMAGES):
        w = _ecc(a, power.rotate(a, np.random.default_rng(i)))
        angle = abs(np.degrees(np.arctan2(w[1, 0], w[0, 0])))
        assert 0.7 <= angle <= 5.5, angle
        w = _ecc(a, power.translate(a, np.random.default_rng(i)))
        shift = np.hypot(*w[:, 2]) / a.shape[0]
        assert 0.015 <= shift <= 0.09, shift


def test_gamma_is_a_power_curve():
    a = IMAGES[1]
    x = to_unit(a)
    y = to_unit(power.gamma(a, np.random.default_rng(4)))
    ok = (x > 0.05) & (x < 0.95) & (y > 0.01)
    g = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0]
    assert 0.58 <= g <= 1.65 and abs(g - 1) > 0.02, g


def test_overlay_marks_only_small_areas():
    a = IMAGES[2]
    changed = np.abs(to_unit(power.overlay(a, np.random.default_rng(5))) - to_unit(a)) > 0.02
    assert 0.005 < changed.mean() < 0.2  # a marker and a line of text, not the whole image
    rows = np.flatnonzero(changed.any(axis=1))
    assert len(rows) < 0.5 * a.shape[0]  # confined to a band at the top and one at the bottom


def test_plant_covers_every_family_in_memory():
    images, sources, names = power.plant(IMAGES, 3, seed=0)
    assert len(images) == 3 * len(power.FAMILIES) and set(names) == set(power.FAMILIES)
    assert sources.max() < len(IMAGES)
