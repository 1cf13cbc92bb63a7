"""The washed-out rule: contrast below the real training images' 1% quantile."""

import numpy as np

from evaluation import washout


def test_flat_images_are_washed_out_and_real_ones_rarely():
    rng = np.random.default_rng(0)
    real = (rng.uniform(0.2, 0.5, (400, 1, 1)) * rng.standard_normal((400, 16, 16)) + 0.5).clip(0, 1)
    real16 = (real * 65535).astype(np.uint16)
    line = washout.threshold(real16)
    np.testing.assert_allclose(washout.contrast(real16), real.reshape(400, -1).std(1), atol=1e-4)
    assert washout.washed_out_share(real16, line) <= 0.02  # ~1% by construction
    flat = np.full((10, 16, 16), 0.7) + 0.01 * rng.standard_normal((10, 16, 16))
    assert washout.washed_out_share(flat, line) == 1.0
