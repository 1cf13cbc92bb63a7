"""privacy/residual.py on realistic 64 px phantoms: a blurred, re-curved, noisy copy leaves a residual as
structureless as white noise, a distinct image does not, and too little image gives no verdict."""

from __future__ import annotations

import cv2
import numpy as np

from cspine.images import to_unit
from privacy import residual
from tests.privacy.test_power_families import realistic

IMAGES = to_unit(realistic(6, seed=5)).astype(np.float32)
FULL = np.ones((64, 64), bool)
NONE = np.zeros((64, 64), bool)


def test_a_rendered_noisy_copy_leaves_white_noise_and_a_distinct_image_structure():
    """The independent reference is white noise itself: low-passed by a Gaussian of sigma g, its variance
    drops by 4 pi g^2, which is what ``structure`` divides by, so a copy whose residual is the added noise
    scores about 1."""
    rng = np.random.default_rng(0)
    ref = IMAGES[0]
    copy = cv2.GaussianBlur(ref, (0, 0), 1.2) ** 1.4 * 0.8 + 0.1  # blur, gamma, gain and offset
    noisy = (copy + rng.normal(0, 0.02, copy.shape)).astype(np.float32)
    structure, low = residual.unexplained(ref, noisy, FULL, NONE)
    assert 0.5 < structure < 2.0, structure
    assert low < 0.01, low
    for other in IMAGES[1:]:
        s_other, low_other = residual.unexplained(other, noisy, FULL, NONE)
        assert s_other > 3 * structure and low_other > 5 * low, (s_other, low_other)


def test_a_noise_free_copy_leaves_almost_nothing_at_low_frequencies():
    ref = IMAGES[2]
    copy = cv2.GaussianBlur(ref, (0, 0), 0.9) ** 0.7
    low = residual.unexplained(ref, copy, FULL, NONE)[1]
    assert low < 1e-3, low
    assert residual.unexplained(IMAGES[3], copy, FULL, NONE)[1] > 10 * low


def test_burned_in_pixels_are_left_out_and_too_little_image_gives_no_fit():
    rng = np.random.default_rng(1)
    ref = IMAGES[4]
    q = (ref + rng.normal(0, 0.02, ref.shape)).astype(np.float32)
    burned = NONE.copy()
    burned[5:15, 5:40] = True
    written = q.copy()
    written[burned] = 1.0  # burned-in text, masked out: the verdict is the unwritten copy's
    np.testing.assert_allclose(residual.unexplained(ref, written, FULL, burned),
                               residual.unexplained(ref, q, FULL, burned), rtol=1e-6)
    assert residual.unexplained(ref, written, FULL, NONE)[0] > residual.unexplained(ref, written, FULL, burned)[0]
    frame = NONE.copy()
    frame[:, :12] = True  # 19% of the image: under MIN_AREA
    assert (residual.unexplained(ref, q, frame, NONE) == residual.NO_FIT).all()
