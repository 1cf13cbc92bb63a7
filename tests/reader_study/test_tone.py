"""The study's tone policy (reader_study.tone): exact histogram specification gives every image the same
8-bit histogram, keeps each image's own order of intensities, and breaks ties by local means, not by raster
position."""

from __future__ import annotations

import numpy as np
import pytest

from reader_study import tone


def _images():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    gradient = 0.2 + 0.6 * xx
    shutter = gradient.copy()
    shutter[:, :12] = 0.02  # a flat display shutter: a quarter of the image at one value
    noisy = np.clip(0.5 + 0.2 * rng.standard_normal((48, 48)), 0, 1)
    saturated = np.clip(1.5 * yy, 0, 1)  # a third of it at exactly 1.0
    return [gradient, shutter, noisy, saturated]


def test_target_is_the_mean_quantile_function_quantised_once():
    imgs = _images()
    target = tone.target_values(iter(imgs))  # a generator: the target streams
    expected = np.rint(np.mean([np.sort(i.ravel()) for i in imgs], axis=0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(target, expected)
    assert np.all(np.diff(target.astype(int)) >= 0)


def test_every_specified_image_has_exactly_the_target_histogram():
    imgs = _images()
    target = tone.target_values(imgs)
    want = np.bincount(target, minlength=256)
    for k, img in enumerate(imgs):
        out = tone.specify(img, target, seed=k)
        assert out.dtype == np.uint8 and out.shape == img.shape
        np.testing.assert_array_equal(np.bincount(out.ravel(), minlength=256), want)
    # and so the statistics a shortcut would use are the same for all of them
    outs = [tone.specify(i, target) for i in imgs]
    assert len({(o.mean(), o.std(), (o == 0).mean(), (o == 255).mean()) for o in outs}) == 1


def test_specification_is_monotone_in_the_images_own_values():
    imgs = _images()
    target = tone.target_values(imgs)
    for img in imgs:
        x, y = img.ravel(), tone.specify(img, target).ravel().astype(int)
        order = np.argsort(x, kind="stable")
        xs, ys = x[order], y[order]
        # a brighter input pixel never gets a darker output value than a dimmer one: at every step up in the
        # input, everything before it is at most everything after it
        before = np.maximum.accumulate(ys)[:-1]
        after = np.minimum.accumulate(ys[::-1])[::-1][1:]
        step = np.diff(xs) > 0
        assert step.any() and np.all(before[step] <= after[step])


def test_ties_are_broken_by_local_means_then_a_seeded_key():
    img = np.full((33, 33), 0.5)
    img[16, 16] = 0.9  # one bright pixel in a flat field
    order = tone.strict_order(img, seed=0)
    rank = np.empty(img.size, dtype=int)
    rank[order] = np.arange(img.size)
    rank = rank.reshape(img.shape)
    assert rank[16, 16] == img.size - 1
    # among the equal pixels, the bright pixel's neighbours rank above those far from it
    assert rank[16, 15] > rank[16, 8] > rank[0, 0]
    assert min(rank[15, 16], rank[17, 16], rank[16, 15], rank[16, 17]) > np.median(rank)
    # inside a perfectly flat field the order is not raster order, and the same seed gives the same order
    flat = np.full((16, 16), 0.3)
    o1, o2 = tone.strict_order(flat, seed=1), tone.strict_order(flat, seed=1)
    np.testing.assert_array_equal(o1, o2)
    assert not np.array_equal(o1, np.arange(flat.size))
    assert not np.array_equal(o1, tone.strict_order(flat, seed=2))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        tone.target_values([np.zeros((4, 4)), np.zeros((4, 5))])
    with pytest.raises(ValueError, match="no images"):
        tone.target_values([])
    with pytest.raises(ValueError, match="16 values for an image of 25"):
        tone.specify(np.zeros((5, 5)), np.zeros(16, dtype=np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        tone.strict_order(np.zeros((2, 2, 2)))
