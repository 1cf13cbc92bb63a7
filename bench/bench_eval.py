"""Benchmarks of `cspine evaluate` (how fast, as ratios against a baseline run in the same process).

1. FID through torchmetrics on the affine-hull projection vs on raw 2048-d features (same value).
2. Inception features: images/s of the bundled network, cold vs through the shared feature cache (warm).

Run: .venv/bin/python -m bench eval   (or: .venv/bin/python -m bench.bench_eval --n 64)
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch


def _t(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="images per set")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv if argv is not None else [])
    torch.set_num_threads(args.threads)

    from cspine.feature_cache import FeatureCache
    from evaluation.data import image_set_from_unit
    from evaluation.features import set_features
    from evaluation.metrics import fid
    from tests.fakerun import blob_image

    rng = np.random.default_rng(0)
    a = image_set_from_unit("a", np.stack([blob_image(rng, 64) for _ in range(args.n)]) / 65535.0)
    b = image_set_from_unit("b", np.stack([blob_image(rng, 64) for _ in range(args.n)]) / 65535.0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp)
        fa, cold = _t(lambda: set_features(a, cache, progress=False))
        _, warm = _t(lambda: set_features(a, cache, progress=False))
        fb = set_features(b, cache, progress=False)
    print(f"inception features: {args.n / cold:.2f} images/s cold, {args.n / warm:.0f} images/s from the cache "
          f"(x{cold / warm:.0f})")
    v_proj, t_proj = _t(lambda: fid(fa, fb, project=True))
    v_raw, t_raw = _t(lambda: fid(fa, fb, project=False))
    print(f"torchmetrics FID: raw 2048-d {t_raw:.2f} s, projected {t_proj:.2f} s (x{t_raw / t_proj:.1f}); "
          f"values {v_raw:.6g} vs {v_proj:.6g}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
