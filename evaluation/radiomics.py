"""Fréchet Radiomics Distance (FRD): a radiograph-specific distance, since Inception features come from photographs.

Uses the ``frd-score`` package (FRD v1: pyradiomics first-order, GLCM, GLRLM, GLSZM, NGTDM features on the
original, LoG and wavelet-filtered image, z-scored against the real set, Fréchet distance, log) through
its public ``compute_frd`` on PNG file lists. pyradiomics comes from the maintained fork
``pyradiomics-bhklab``. Real images live in ``data/pixels.npy``, so they are written to a temporary folder
as 16-bit PNGs first (synthetic ones already are PNG files, but are written the same way for symmetry).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from cspine.images import write_png


def frd_available() -> str | None:
    """None when FRD can run, else the reason it cannot."""
    try:
        import frd_score  # noqa: F401
        import radiomics  # noqa: F401
    except Exception as exc:  # ImportError, or pyradiomics' C extension failing to load
        return f"frd-score/pyradiomics not importable ({type(exc).__name__}: {exc})"
    return None


def frd(real: np.ndarray, fake: np.ndarray, workers: int = 1) -> float:
    """FRD (v1, log scale) between two sets of uint16 gray images ``[n, H, W]``; lower is closer."""
    reason = frd_available()
    if reason:
        raise RuntimeError(reason)
    import frd_score

    for name, a in (("real", real), ("synthetic", fake)):
        if len(a) < 2:
            raise ValueError(f"FRD needs at least 2 {name} images, got {len(a)}")
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    logging.getLogger("pykwalify").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cspine-frd-") as tmp:
        lists = []
        for name, arr in (("real", real), ("fake", fake)):
            folder = Path(tmp) / name
            folder.mkdir()
            paths = []
            for i, img in enumerate(arr):
                p = folder / f"{i:06d}.png"
                write_png(p, np.asarray(img, dtype=np.uint16))
                paths.append(str(p))
            lists.append(paths)
        value = frd_score.compute_frd(lists, num_workers=workers, verbose=False)
    return float(value)
