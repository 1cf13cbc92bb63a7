"""Benchmarks of the privacy audit (`make bench`): search at the paper's scale, and embedding throughput.

Search, with random features at the paper's scale (20,063 synthetic x 4,963 training) and ten times it:

- Hamming top-k on packed 64-bit hashes (XOR + np.bitwise_count, chunked) against the naive baseline, a
  per-pair Python loop over imagehash objects (``h1 - h2``, what imagehash offers), timed on a slice of
  pairs and scaled to the full count.
- Cosine top-k on unit vectors (chunked matrix products + argpartition) against the naive baseline, the
  full distance matrix at once (scipy cdist, then argsort), timed in the same process.

Throughput: images/s per audit method on 64 px phantom-like images (CLIP with randomly initialised
ViT-B-32 weights: the speed does not depend on the weights, and none ship offline).
Ratios > 1 mean the audit's way is faster. The 10x rows time a slice of the queries and scale up (said so). The 2048-d (Inception) search is
timed without the naive baseline, whose full matrix would take minutes more on this CPU.
"""

from __future__ import annotations

import time

import numpy as np

PAPER_SYN, PAPER_TRAIN = 20_063, 4_963


def _t(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def bench_hamming(rng: np.random.Generator) -> None:
    import imagehash

    from privacy.search import topk

    q = rng.integers(0, 2**63, size=(PAPER_SYN, 1), dtype=np.uint64)
    b = rng.integers(0, 2**63, size=(PAPER_TRAIN, 1), dtype=np.uint64)
    (_, _), t_vec = _t(topk, q, b, 5, "hamming")
    # naive: imagehash objects compared pair by pair in Python
    bits_q = np.unpackbits(q.view(np.uint8), axis=1).astype(bool).reshape(-1, 8, 8)
    bits_b = np.unpackbits(b.view(np.uint8), axis=1).astype(bool).reshape(-1, 8, 8)
    hq = [imagehash.ImageHash(x) for x in bits_q[:40]]
    hb = [imagehash.ImageHash(x) for x in bits_b]
    t0 = time.perf_counter()
    for h in hq:
        d = [h - o for o in hb]
        sorted(range(len(d)), key=d.__getitem__)[:5]
    t_naive = (time.perf_counter() - t0) * PAPER_SYN / len(hq)
    print(f"hamming top-5 {PAPER_SYN}x{PAPER_TRAIN}: vectorised {t_vec:.2f} s, naive per-pair loop "
          f"~{t_naive:.0f} s (timed on {len(hq)} queries) -> ratio {t_naive / t_vec:.0f}x")
    # ten times the paper's scale: time 1/100 of the queries, scale up
    n10 = 10 * PAPER_SYN // 100
    q10 = rng.integers(0, 2**63, size=(n10, 1), dtype=np.uint64)
    b10 = rng.integers(0, 2**63, size=(10 * PAPER_TRAIN, 1), dtype=np.uint64)
    (_, _), t10 = _t(topk, q10, b10, 5, "hamming")
    print(f"hamming top-5 at 10x ({10 * PAPER_SYN}x{10 * PAPER_TRAIN}): ~{t10 * 100:.0f} s "
          f"(timed {n10} queries: {t10:.1f} s, scaled; memory bounded by the 256 MiB block)")


def bench_cosine(rng: np.random.Generator, dim: int, naive_baseline: bool = True) -> None:
    from scipy.spatial.distance import cdist

    from privacy.search import topk

    def unit(n):
        x = rng.standard_normal((n, dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q, b = unit(PAPER_SYN), unit(PAPER_TRAIN)
    (idx, _), t_vec = _t(topk, q, b, 5, "cosine")
    if not naive_baseline:
        print(f"cosine top-5 {PAPER_SYN}x{PAPER_TRAIN} dim {dim} (Inception): chunked {t_vec:.2f} s")
        return

    def naive(q, b):
        d = cdist(q, b, metric="cosine")  # full float64 matrix
        return np.argsort(d, axis=1)[:, :5], d.nbytes

    (nidx, nbytes), t_naive = _t(naive, q, b)
    agree = float(np.mean(nidx[:, 0] == idx[:, 0]))
    print(f"cosine top-5 {PAPER_SYN}x{PAPER_TRAIN} dim {dim}: chunked {t_vec:.2f} s, full distance matrix "
          f"{t_naive:.2f} s ({nbytes / 2**20:.0f} MiB at once) -> ratio {t_naive / t_vec:.1f}x; top-1 agreement {agree:.4f}")
    n10 = 10 * PAPER_SYN // 200
    (_, _), t10 = _t(topk, q[:n10], unit(10 * PAPER_TRAIN), 5, "cosine")
    print(f"cosine top-5 at 10x ({10 * PAPER_SYN}x{10 * PAPER_TRAIN}) dim {dim}: ~{t10 * 200:.0f} s "
          f"(timed {n10} queries: {t10:.1f} s, scaled; the full matrix would need "
          f"{10 * PAPER_SYN * 10 * PAPER_TRAIN * 8 / 2**30:.0f} GiB)")


def bench_pixel_aligned(rng: np.random.Generator) -> None:
    """The pixel method compares with 55 crops of every training image: its search is the costly one."""
    from privacy.search import topk

    groups, dim, nq = 55, 32 * 32, 400
    q = rng.standard_normal((nq, dim), dtype=np.float32)
    b = rng.standard_normal((groups * PAPER_TRAIN, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    (_, _), t = _t(topk, q, b, 5, "cosine", groups=groups)
    scale = PAPER_SYN / nq
    print(f"pixel (55 crops x {PAPER_TRAIN} training, 32x32) top-5 for {PAPER_SYN} synthetic: ~{t * scale:.0f} s "
          f"(timed {nq} queries: {t:.1f} s, scaled); 10x: ~{t * scale * 100:.0f} s "
          "(lower audit.pixel_align_steps for very large audits: cost grows with the crop count)")


def bench_throughput() -> None:
    import torch

    from privacy.embedders import ClipEmbedder, HashEmbedder, InceptionEmbedder, PixelEmbedder
    from tests.fakerun import blob_image

    rng = np.random.default_rng(0)
    small = np.stack([blob_image(rng, 64) for _ in range(32)])
    many = np.concatenate([small] * 64)  # 2048 images for the cheap methods
    rows = []
    for emb, imgs in [
        (HashEmbedder(kind="phash"), many), (HashEmbedder(kind="dhash"), many), (PixelEmbedder(), many),
        (InceptionEmbedder(batch_size=32), small),
    ]:
        emb.compute(imgs[:4])
        _, t = _t(emb.compute, imgs)
        rows.append((emb.name, len(imgs) / t))
        emb.close()
    # serial hashing for the parallel-processes ratio
    serial = HashEmbedder(kind="phash", workers=1)
    _, t_serial = _t(serial.compute, many)
    import open_clip

    clip = ClipEmbedder("ViT-B-32", "random-init")
    clip._model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    clip.compute(small[:2])
    _, t = _t(clip.compute, small)
    rows.append(("clip (ViT-B-32, random weights)", len(small) / t))
    print(f"embedding throughput, 64 px images, torch threads {torch.get_num_threads()}:")
    for name, ips in rows:
        print(f"  {name:34s} {ips:9.1f} images/s")
    print(f"  phash parallel processes vs one process: {len(many) / t_serial:.0f} -> {rows[0][1]:.0f} images/s "
          f"({rows[0][1] / (len(many) / t_serial):.2f}x)")


def main() -> None:
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    bench_hamming(rng)
    bench_cosine(rng, 512)
    bench_cosine(rng, 2048, naive_baseline=False)
    bench_pixel_aligned(rng)
    bench_throughput()


if __name__ == "__main__":
    main()
