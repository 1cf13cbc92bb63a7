"""Exact top-k nearest-neighbour search, chunked so memory stays bounded.

Where it sits: privacy/audit.py calls :func:`topk` with the finalised features of privacy/embedders.py
(unit vectors for cosine methods, packed uint64 hash words for Hamming methods). Queries are processed in
blocks sized so that one block's distance matrix stays under ``mem_bytes``; only ``[n, k]`` results are
kept. Distances are "lower is closer": ``1 - cosine`` for vectors, bit counts for hashes (XOR of packed
words, then ``np.bitwise_count``). Results are sorted by distance, ties by training index.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MEM = 256 * 2**20


def _block_rows(n_base: int, bytes_per_pair: int, chunk_size: int, mem_bytes: int) -> int:
    return max(1, min(chunk_size, mem_bytes // max(1, n_base * bytes_per_pair)))


def _select(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted top-k (smallest) of each row of ``dist``: (indices, distances)."""
    n_base = dist.shape[1]
    if k < n_base:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_base), (dist.shape[0], n_base)).copy()
    d = np.take_along_axis(dist, part, axis=1)
    order = np.lexsort((part, d), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(d, order, axis=1)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances [len(a), len(b)] between packed uint64 hash rows: uint8 for one 64-bit word (the
    count itself, no extra pass), uint16 summed over words for longer hashes."""
    out = np.bitwise_count(a[:, 0, None] ^ b[None, :, 0])
    if a.shape[1] > 1:
        out = out.astype(np.uint16)
        for w in range(1, a.shape[1]):
            out += np.bitwise_count(a[:, w, None] ^ b[None, :, w])
    return out


def topk(
    query: np.ndarray,
    base: np.ndarray,
    k: int,
    metric: str,
    chunk_size: int = 2048,
    mem_bytes: int = DEFAULT_MEM,
    progress: bool = False,
    desc: str = "search",
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k nearest rows of ``base`` for each row of ``query``: (indices int64 [n, k'], distances [n, k']).

    ``k' = min(k, n_base)``. ``metric`` is "cosine" (rows unit-normalised float32; distance 1 - dot)
    or "hamming" (packed uint64 words; distance in bits). With ``groups`` > 1, ``base`` holds ``groups``
    vectors per reference item, group-major (row ``g * n_base + j``), and the distance to item ``j`` is the
    smallest over its vectors (used for crop-tolerant pixel matching).
    """
    if len(base) == 0:
        raise ValueError("nearest-neighbour search against an empty set")
    if len(base) % groups:
        raise ValueError(f"base has {len(base)} rows, not a multiple of groups={groups}")
    n_base = len(base) // groups
    k = min(k, n_base)
    n = len(query)
    idx = np.empty((n, k), dtype=np.int64)
    if metric == "cosine":
        query = np.ascontiguousarray(query, dtype=np.float32)
        base = np.ascontiguousarray(base, dtype=np.float32)
        dist_out = np.empty((n, k), dtype=np.float32)
        rows = _block_rows(len(base) + n_base, 4, chunk_size, mem_bytes)
    elif metric == "hamming":
        if query.dtype != np.uint64 or base.dtype != np.uint64:
            raise TypeError("hamming search expects packed uint64 hash words")
        dist_out = np.empty((n, k), dtype=np.uint16)
        rows = _block_rows(len(base), 2 + 8, chunk_size, mem_bytes)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    starts = range(0, n, rows)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="block", leave=False)
    for s in starts:
        q = query[s : s + rows]
        if metric == "cosine":
            d = q @ base.T
            if groups > 1:
                d = d.reshape(len(q), groups, n_base).max(axis=1)
            np.subtract(1.0, d, out=d)
        else:
            d = hamming_matrix(q, base)
            if groups > 1:
                d = d.reshape(len(q), groups, n_base).min(axis=1)
        idx[s : s + len(q)], dist_out[s : s + len(q)] = _select(d, k)
    return idx, dist_out


def nearest(query: np.ndarray, base: np.ndarray, metric: str, **kw) -> np.ndarray:
    """Distance of each query row to its closest base row."""
    return topk(query, base, 1, metric, **kw)[1][:, 0]
