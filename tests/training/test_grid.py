"""The periodic sample grid tiles images, enlarged by an integer factor with no pixel invented."""

import numpy as np

from training.grids import grid_image


def test_grid_enlarges_small_tiles_by_whole_pixels():
    rng = np.random.default_rng(0)
    imgs = rng.random((5, 32, 32)).astype(np.float32)
    g = grid_image(imgs, min_tile=128)
    # 5 images -> 3 columns x 2 rows of 128 px tiles with 2 px gaps
    assert g.shape == (2 * 130 - 2, 3 * 130 - 2) and g.dtype == np.uint8
    tile = g[:128, 130:258]  # second image
    expected = np.rint(imgs[1] * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)
    assert np.array_equal(tile, expected)
    assert g[128:130].max() == 0  # the gap stays black


def test_grid_keeps_large_images_at_their_size():
    imgs = np.full((4, 256, 256), 0.5, np.float32)
    assert grid_image(imgs).shape == (2 * 258 - 2, 2 * 258 - 2)
