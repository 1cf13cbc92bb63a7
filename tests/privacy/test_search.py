"""Nearest-neighbour search: chunked results equal brute force; hashes pack and compare bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest

from privacy.embedders import pack_bits
from privacy.search import hamming_matrix, nearest, topk


def test_cosine_topk_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((103, 16)).astype(np.float32)
    b = rng.standard_normal((57, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    full = 1 - q @ b.T
    want = np.argsort(full, axis=1, kind="stable")[:, :4]
    for chunk, mem in [(7, 1 << 30), (2048, 57 * 4 * 3)]:  # small blocks by rows, and by the memory bound
        idx, dist = topk(q, b, 4, "cosine", chunk_size=chunk, mem_bytes=mem)
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_allclose(dist, np.take_along_axis(full, want, axis=1), atol=1e-6)
        assert np.all(np.diff(dist, axis=1) >= 0)
    idx, _ = topk(q, b, 100, "cosine")  # k larger than the base set: all of it, sorted
    assert idx.shape == (103, 57)


def test_hamming_on_packed_hashes_matches_python_popcount():
    rng = np.random.default_rng(1)
    bits_q = rng.random((40, 100)) > 0.5  # 100 bits -> two words, padded
    bits_b = rng.random((30, 100)) > 0.5
    pq, pb = pack_bits(bits_q.astype(np.float32)), pack_bits(bits_b.astype(np.float32))
    assert pq.dtype == np.uint64 and pq.shape == (40, 2)
    want = (bits_q[:, None, :] != bits_b[None, :, :]).sum(-1)
    np.testing.assert_array_equal(hamming_matrix(pq, pb), want)
    idx, dist = topk(pq, pb, 3, "hamming", chunk_size=6)
    np.testing.assert_array_equal(dist, np.sort(want, axis=1)[:, :3])
    np.testing.assert_array_equal(np.take_along_axis(want, idx, axis=1), dist)
    np.testing.assert_array_equal(nearest(pq, pb, "hamming"), want.min(axis=1))


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="empty"):
        topk(np.zeros((2, 3), np.float32), np.zeros((0, 3), np.float32), 1, "cosine")
    with pytest.raises(TypeError, match="uint64"):
        topk(np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32), 1, "hamming")


def test_grouped_search_takes_the_best_vector_of_each_item():
    rng = np.random.default_rng(2)
    g, n, d = 5, 300, 24
    base = rng.standard_normal((g * n, d)).astype(np.float32)  # group-major: row g*n + j
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    # queries: noisy copies of some group's vector of items 0..39, so the best group is not group 0
    items = np.arange(40)
    q = base.reshape(g, n, d)[rng.integers(0, g, 40), items] + rng.normal(0, 0.05, (40, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    full = 1 - (q @ base.T).reshape(40, g, n).max(axis=1)
    idx, dist = topk(q, base, 3, "cosine", groups=g, chunk_size=7)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1, kind="stable")[:, :3])
    assert np.all(idx[:, 0] == items)
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :3], atol=1e-6)
