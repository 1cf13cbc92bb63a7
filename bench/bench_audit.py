"""Benchmarks of the privacy audit (`make bench`): search at the paper's scale, embedding throughput, and the
whole audit's cost at the paper's scale.

Search, with random features at the paper's scale (20,063 synthetic x 4,963 training) and ten times it, each
against the best straightforward implementation a competent engineer would write, timed in the same process
on the same arrays (and checked to find the same neighbours):

- Hamming top-5 on packed 64-bit hashes: the audit's chunked search (privacy.search.topk) against numpy
  ``bitwise_count`` over the XOR of query chunks with all training hashes, then ``argpartition``.
- Cosine top-5 on unit vectors: the audit's chunked search against one BLAS matrix product of everything
  with ``argpartition`` (numpy), and against the same with ``torch.topk`` (what a torch user would write).

Throughput: images/s per audit method on 64 px phantom-like images (CLIP with randomly initialised
ViT-B-32 weights: the speed does not depend on the weights, and none ship offline).

Paper scale: the audit embeds 4,963 training + ~870 holdout + 20,063 synthetic images per method and
searches them; the total (embedding included) is projected from the throughput and search timings above and
the dominant method named. Ratios > 1 mean the audit's way is faster. Figures also go to bench/results.json.
"""

from __future__ import annotations

import time

import numpy as np

PAPER_SYN, PAPER_TRAIN = 20_063, 4_963


def _t(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def bench_hamming(rng: np.random.Generator) -> dict:
    from privacy.search import topk

    q = rng.integers(0, 2**63, size=(PAPER_SYN, 1), dtype=np.uint64)
    b = rng.integers(0, 2**63, size=(PAPER_TRAIN, 1), dtype=np.uint64)
    (idx, dist), t_ours = _t(topk, q, b, 5, "hamming")

    def numpy_baseline(q, b, chunk=2048):
        """XOR + bitwise_count + argpartition, in query chunks (the full XOR matrix is 800 MB)."""
        out = np.empty((len(q), 5), dtype=np.int64)
        for s in range(0, len(q), chunk):
            d = np.bitwise_count(q[s:s + chunk, 0][:, None] ^ b[None, :, 0])
            part = np.argpartition(d, 5, axis=1)[:, :5]
            order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
            out[s:s + chunk] = np.take_along_axis(part, order, axis=1)
        return out

    nidx, t_np = _t(numpy_baseline, q, b)
    same = float(np.mean(np.bitwise_count(q[:, 0] ^ b[nidx[:, 0], 0]) == dist[:, 0]))
    print(f"hamming top-5 {PAPER_SYN}x{PAPER_TRAIN}: audit {t_ours:.2f} s, numpy bitwise_count+argpartition "
          f"{t_np:.2f} s -> ratio {t_np / t_ours:.2f}x; same top-1 distance {same:.4f}")
    n10 = 10 * PAPER_SYN // 100
    q10 = rng.integers(0, 2**63, size=(n10, 1), dtype=np.uint64)
    b10 = rng.integers(0, 2**63, size=(10 * PAPER_TRAIN, 1), dtype=np.uint64)
    (_, _), t10 = _t(topk, q10, b10, 5, "hamming")
    print(f"hamming top-5 at 10x ({10 * PAPER_SYN}x{10 * PAPER_TRAIN}): ~{t10 * 100:.0f} s "
          f"(timed {n10} queries: {t10:.1f} s, scaled; memory bounded by the 256 MiB block)")
    return {"hamming_s": round(t_ours, 3), "hamming_numpy_s": round(t_np, 3), "hamming_ratio": round(t_np / t_ours, 3),
            "hamming_10x_s": round(t10 * 100, 1)}


def bench_cosine(rng: np.random.Generator, dim: int) -> dict:
    import torch

    from privacy.search import topk

    def unit(n):
        x = rng.standard_normal((n, dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q, b = unit(PAPER_SYN), unit(PAPER_TRAIN)
    (idx, _), t_ours = _t(topk, q, b, 5, "cosine")

    def numpy_baseline(q, b):
        sim = q @ b.T  # one BLAS call, float32 (400 MB at the paper's scale)
        part = np.argpartition(-sim, 5, axis=1)[:, :5]
        order = np.argsort(-np.take_along_axis(sim, part, axis=1), axis=1)
        return np.take_along_axis(part, order, axis=1)

    def torch_baseline(q, b):
        return torch.topk(torch.from_numpy(q) @ torch.from_numpy(b).T, 5, dim=1).indices.numpy()

    nidx, t_np = _t(numpy_baseline, q, b)
    tidx, t_torch = _t(torch_baseline, q, b)
    agree = float(np.mean((nidx[:, 0] == idx[:, 0]) & (tidx[:, 0] == idx[:, 0])))
    print(f"cosine top-5 {PAPER_SYN}x{PAPER_TRAIN} dim {dim}: audit {t_ours:.2f} s, numpy BLAS+argpartition "
          f"{t_np:.2f} s ({t_np / t_ours:.2f}x), torch matmul+topk {t_torch:.2f} s ({t_torch / t_ours:.2f}x); "
          f"top-1 agreement {agree:.4f}")
    n10 = 10 * PAPER_SYN // 200
    (_, _), t10 = _t(topk, q[:n10], unit(10 * PAPER_TRAIN), 5, "cosine")
    print(f"cosine top-5 at 10x ({10 * PAPER_SYN}x{10 * PAPER_TRAIN}) dim {dim}: ~{t10 * 200:.0f} s "
          f"(timed {n10} queries: {t10:.1f} s, scaled; one matrix would need "
          f"{10 * PAPER_SYN * 10 * PAPER_TRAIN * 4 / 2**30:.0f} GiB)")
    return {f"cosine{dim}_s": round(t_ours, 3), f"cosine{dim}_numpy_s": round(t_np, 3),
            f"cosine{dim}_torch_s": round(t_torch, 3), f"cosine{dim}_ratio_numpy": round(t_np / t_ours, 3),
            f"cosine{dim}_ratio_torch": round(t_torch / t_ours, 3)}


def bench_pixel_aligned(rng: np.random.Generator) -> float:
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
    return t * scale


def bench_throughput() -> dict[str, float]:
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
    return {name.split(" ")[0]: ips for name, ips in rows}


def bench_copydetect() -> float:
    """copydetect's cost at the paper's scale: training its embedding (a fixed number of steps, whatever the
    training set's size), embedding every image, and verifying candidates by alignment (the bulk: 10 per
    synthetic and holdout image, 5 + 5 more per synthetic image for the DCR shares; each call scores both
    bands at ECC's warp and at the identity), timed on 64 px phantoms."""
    from privacy.config import AuditConfig
    from privacy.copydetect import CopyDetect
    from tests.privacy.test_power_families import realistic

    cfg = AuditConfig()
    imgs = realistic(96, seed=7)
    _, t_setup = _t(CopyDetect(steps=0).fit, imgs[:64])  # glyph bank, embedding the references
    cd = CopyDetect(steps=10, candidates=cfg.copydetect_candidates)
    _, t_fit = _t(cd.fit, imgs[:64])
    per_step = max(t_fit - t_setup, 0.0) / 10  # batch 64 here, 128 at scale: a lower bound
    q = imgs[64:]
    (_, _), t_q = _t(cd.topk, q, "train", cfg.top_k)
    per_call = t_q / (len(q) * cfg.copydetect_candidates)
    n_hold = PAPER_IMAGES - PAPER_TRAIN - PAPER_SYN
    calls = (PAPER_SYN * (cfg.copydetect_candidates + 2 * max(1, cfg.copydetect_candidates // 2))
             + n_hold * cfg.copydetect_candidates)
    per_step *= 2  # the batch is 128 at scale
    total = cfg.copydetect_steps * per_step + calls * per_call
    print(f"copydetect: training {per_step:.2f} s/step x {cfg.copydetect_steps} steps = "
          f"{cfg.copydetect_steps * per_step:.0f} s; verification {per_call * 1e3:.1f} ms per candidate "
          f"({cd.workers} threads) x {calls} candidates at the paper's scale = {calls * per_call / 60:.1f} min; "
          f"per synthetic image {per_call * (cfg.copydetect_candidates + 2 * max(1, cfg.copydetect_candidates // 2)) * 1e3:.0f} ms")
    return total


#: Images the audit embeds per method at the paper's scale: training, holdout (15% of cases), synthetic.
PAPER_IMAGES = PAPER_TRAIN + round(PAPER_TRAIN / 0.85 * 0.15) + PAPER_SYN


def paper_scale_total(ips: dict[str, float], search_s: dict[str, float], whole_s: dict[str, float] | None = None) -> dict:
    """Projected audit time at the paper's scale per method (embedding at the measured 64 px throughput,
    plus its search; ``whole_s``: methods timed as a whole, copydetect) and in total, with the dominant method."""
    per = {m: PAPER_IMAGES / ips[m] + search_s.get(m, 0.0) for m in ips} | dict(whole_s or {})
    total = sum(per.values())
    top = max(per, key=per.get)
    print(f"paper-scale audit ({PAPER_IMAGES} images per method, embedding + search, this CPU): "
          f"~{total / 60:.0f} min in all; " + ", ".join(f"{m} {v / 60:.1f} min" for m, v in sorted(per.items(), key=lambda x: -x[1]))
          + f"; {top} dominates ({per[top] / total:.0%}). Embedding is timed at 64 px: at 256 px the hashes and "
          "pixels cost more, Inception and CLIP about the same (they resize to their own input size).")
    from privacy.config import FAST_METHODS

    fast = sum(v for m, v in per.items() if m in FAST_METHODS)
    print(f"paper-scale audit with the default methods ({', '.join(FAST_METHODS)}; privacy/config.py): "
          f"~{fast / 60:.0f} min, {total / max(fast, 1e-9):.1f}x faster than all methods")
    return {"paper_images_per_method": PAPER_IMAGES, "paper_total_min": round(total / 60, 1),
            "paper_default_methods_min": round(fast / 60, 1),
            "paper_per_method_min": {m: round(v / 60, 2) for m, v in per.items()}, "paper_dominant": top}


def main() -> None:
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from bench.results import record

    rng = np.random.default_rng(0)
    figures = bench_hamming(rng)
    figures |= bench_cosine(rng, 512)
    figures |= bench_cosine(rng, 2048)
    t_pixel = bench_pixel_aligned(rng)
    ips = bench_throughput()
    search = {"phash": figures["hamming_s"], "dhash": figures["hamming_s"], "pixel": t_pixel,
              "inception": figures["cosine2048_s"], "clip": figures["cosine512_s"]}
    t_copy = bench_copydetect()
    figures["copydetect_paper_s"] = round(t_copy, 1)
    figures |= paper_scale_total(ips, search, {"copydetect": t_copy})
    figures["throughput_images_per_s"] = {m: round(v, 2) for m, v in ips.items()}
    record("audit", figures)


if __name__ == "__main__":
    main()
