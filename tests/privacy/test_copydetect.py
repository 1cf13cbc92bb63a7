"""privacy/align.py and privacy/copydetect.py on realistic 64 px phantoms: alignment recovers a known warp,
a transformed copy is more alike its source than a distinct image is, and the method is seeded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cspine.images import to_unit
from privacy import align, power
from privacy.copydetect import CopyDetect
from tests.privacy.test_power_families import realistic

IMAGES = realistic(24, seed=5)


def test_alignment_recovers_a_rotation_and_rejects_implausible_warps():
    a = IMAGES[0]
    b = power._affine(a, angle=4.0)  # independent reference: the warp we applied
    (w,) = align.alignments(to_unit(a), to_unit(b))
    rot = align.warp_params(w)[0]
    assert 3.3 <= abs(rot) <= 4.7, rot
    assert not align.plausible(np.array([[0.5, 0, 0], [0, 0.5, 0]], np.float32))  # halving is no copy's warp


def test_rotation_and_shift_fallback_recovers_a_known_warp_at_the_start_zoom():
    a, R = IMAGES[3], IMAGES.shape[-1]
    c = (R - 1) / 2
    m = cv2.getRotationMatrix2D((c, c), 3.0, 0.93)  # the warp power._affine applies (reference -> copy)
    m[0, 2] += 0.04 * R
    ref, query = to_unit(a).astype(np.float32), to_unit(power._affine(a, angle=3.0, scale=0.93, tx=0.04))
    half = (R // 2, R // 2)
    start = np.array([[0.93, 0, c * 0.07], [0, 0.93, c * 0.07]], np.float32)  # the zoom alone, no rotation
    w = align._coarse(cv2.resize(ref, half, interpolation=cv2.INTER_AREA),
                      cv2.resize(query.astype(np.float32), half, interpolation=cv2.INTER_AREA), [start], affine=False)
    assert w is not None
    assert np.abs(w[:, :2] - m[:, :2]).max() < 0.02, w
    assert np.abs(w[:, 2] - m[:, 2]).max() < 1.0, w


def test_burned_in_masks_text_with_its_edge_but_not_around_a_clipped_area():
    x = np.full((64, 64), 0.5, np.float32)
    x[:, :20] = 0.0  # a clipped black band (window/level, black fill): 31% of the image
    x[40:45, 40:50] = 1.0  # a white glyph
    x[39, 40:50] = 0.7  # its anti-aliased edge
    m = align._burned_in(x)
    assert m[40:45, 40:50].all() and m[39, 40:50].all() and m[45, 40:50].all()  # glyph and its ring
    assert m[:, :20].all() and not m[:, 20:22].any()  # the band itself, no ring around it
    assert m.sum() == 64 * 20 + 7 * 12


def test_copies_are_closer_to_their_source_than_distinct_images():
    x = to_unit(IMAGES).astype(np.float32)
    rng = np.random.default_rng(0)
    for fam in ("rotate", "translate", "crop_large", "overlay", "window_level", "blur", "sharpen",
                "geometric_filter", "scale_shear_denoise"):
        c = to_unit(power.FAMILIES[fam](IMAGES[1], rng)).astype(np.float32)
        own = align.similarities(x[1], c)[0]  # the coarse band, as before the fine one
        others = max(align.similarities(x[j], c)[0] for j in range(2, 12))
        assert own > others, (fam, own, others)


def test_copydetect_is_seeded_and_finds_sources():
    train, queries = IMAGES[:16], np.stack([power.rotate(IMAGES[i], np.random.default_rng(i)) for i in (2, 9)])
    runs = [CopyDetect(steps=3, candidates=4, workers=w).fit(train).topk(queries, "train", 2) for w in (1, 2)]
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert list(runs[0][0][:, 0]) == [2, 9]
    assert (runs[0][1][:, 0] < runs[0][1][:, 1]).all()


def test_each_band_and_the_embedding_are_scaled_by_how_close_holdout_images_come():
    """fit() scales each band by the 5% quantile over holdout images of their nearest 1 - r, and the embedding's
    cosine distance by the same quantile of the holdout's nearest cosine distance, recomputed here from
    align.similarities over the same candidates and from the network's embeddings; a pair's distance is the
    nearer band in those units times the square root of the scaled cosine distance (recomputed the same way),
    and a planted copy of a training image lands below every holdout image (the audit's threshold: the
    holdout's minimum)."""
    from privacy import sscd

    train, holdout = IMAGES[:12], IMAGES[12:20]
    cd = CopyDetect(steps=5, candidates=3, workers=1).fit(train, holdout)
    tr, ho = to_unit(train).astype(np.float32), to_unit(holdout).astype(np.float32)
    cand, _ = cd.topk(holdout, "train", 3)
    per_band = np.array([[align.similarities(tr[j], ho[i]) for j in cand[i]] for i in range(len(ho))])
    expect = np.quantile((1.0 - per_band).min(axis=1), 0.05, axis=0)
    assert np.allclose(cd.scales, np.maximum(expect, 1e-6))
    assert len(cd.scales) == len(align.MEASURES) == 4
    cos = sscd.embed(cd._net, ho) @ sscd.embed(cd._net, tr).T  # every holdout image against every training one
    expect_e = np.quantile(1.0 - cos.max(axis=1), 0.05)
    assert np.isclose(cd.embed_scale, max(expect_e, 1e-6), rtol=1e-5)
    hi, hd = cd.topk(holdout, "train", 1)
    cos_c = np.clip(1.0 - np.take_along_axis(cos, cand, 1), 0.0, None) / expect_e
    np.testing.assert_allclose(hd[:, 0], (((1.0 - per_band) / expect).min(axis=2) * np.sqrt(cos_c)).min(axis=1),
                               rtol=1e-4)
    reused = cd.holdout_topk(1)  # what the audit calibrates on: fit's own verification of the holdout
    assert np.array_equal(reused[0], hi) and np.allclose(reused[1], hd)
    copy = power.everything(IMAGES[3], np.random.default_rng(2))[None]
    idx, d = cd.topk(copy, "train", 1)
    assert idx[0, 0] == 3 and d[0, 0] < hd.min()


def test_an_implausible_fine_warp_falls_back_to_the_plausible_coarse_one():
    """A 6-20% crop copy (test_copy_recall's training image 184, 10 px off at top 10, left 9) on which the
    fine ECC step drifts to a squashed warp (scale 1.14 x 0.89): cv2.findTransformECC writes into the warp
    it is given, so the fallback once returned that implausible warp instead of the coarse one."""
    from cspine.images import resize_gray16

    a = realistic(200, 11)[184]
    q = resize_gray16(a[10:64, 9:63], 64)
    warps = align.alignments(to_unit(a).astype(np.float32), to_unit(q).astype(np.float32))
    assert warps and all(align.plausible(w) for w in warps)


def test_ranks_give_ties_their_mean_rank_so_flat_areas_stay_flat():
    v = np.array([0.3, 0.02, 0.02, 0.5, 0.02], np.float32)  # three pixels of a flat shutter share ranks 0-2
    np.testing.assert_array_equal(align._ranks(v), [3.0, 1.0, 1.0, 4.0, 1.0])
    # a consequence: the similarity no longer depends on the pixel order of ties. Transposing both images
    # changes that order and nothing else (every other step is symmetric in x and y).
    a, b = (to_unit(x).astype(np.float32) for x in realistic(2, 5))
    a[:, :12] = b[:, :12] = 0.02  # the same flat shutter in both
    np.testing.assert_allclose(align.aligned_similarities(a.T.copy(), b.T.copy(), align.IDENTITY),
                               align.aligned_similarities(a, b, align.IDENTITY), atol=1e-5)


def test_ecc_leaves_burned_in_pixels_out_of_the_fit():
    """A rotated, zoomed and shifted copy (test_copy_recall's training image 18) under a new window that clips
    and with burned-in text: fitted with the clipped areas and the text, ECC ends 2.6 px (mean over the
    image) from the true warp; leaving them out (align._ecc) it ends within half a pixel. The true warp is
    OpenCV's rotation matrix of the drawn angle and scale plus the shift, independent of align.py."""
    a = realistic(200, 11)[18]
    rng = np.random.default_rng(0)
    ang, sc, tx, ty = rng.uniform(-4, 4), rng.uniform(0.92, 1.08), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)
    true = cv2.getRotationMatrix2D((31.5, 31.5), ang, sc)
    true[:, 2] += (tx * 64, ty * 64)
    copy = power.overlay(power.window_level(power._affine(a, angle=ang, scale=sc, tx=tx, ty=ty), rng), rng)
    ref, q = to_unit(a).astype(np.float32), to_unit(copy).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    pts = np.stack([xx.ravel(), yy.ravel(), np.ones(64 * 64)])
    off = lambda w: float(np.hypot(*((true - w) @ pts)).mean())  # noqa: E731
    masked = align.alignments(ref, q)
    assert masked and off(masked[0]) < 0.5
    unmasked_ecc = lambda r, qq, w, motion, crit, blur, keep: cv2.findTransformECC(r, qq, w, motion, crit, None, blur)  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(align, "_ecc", unmasked_ecc)
        unmasked = align.alignments(ref, q)
    assert not unmasked or off(unmasked[0]) > 2.0  # the case the mask is for
