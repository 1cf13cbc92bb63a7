"""What packaging takes from the privacy audit: the gate (cspine.gate) and the per-image columns it may release.

Released per image: ``{method}_flag`` and ``flagged`` (booleans) and ``closeness`` as a coarse bin: the share
of held-out real images that lie closer to a training image than this synthetic image does under its closest
method, in four bins. Exact nearest-training distances are NOT released: anyone holding a candidate
patient's image can compute the same public embeddings and hashes, and exact distances from every released
image to its nearest training image would let them test whether that patient was in the training set
(membership inference). The ``{method}_nn_id`` columns name training images and never leave the run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cspine.gate import Gate, read_gate
from cspine.rundir import RunDir

__all__ = ["Gate", "read_gate", "release_columns", "CLOSENESS_BINS"]

#: Bin edges (percent of held-out images closer to training) and their labels.
CLOSENESS_BINS = ((0.0, 1.0, "<1%"), (1.0, 10.0, "1-10%"), (10.0, 50.0, "10-50%"), (50.0, 100.01, ">=50%"))


def closeness_bin(pct: np.ndarray) -> list[str]:
    """Coarse label of each holdout percentile (0-100; NaN -> "unknown")."""
    out = []
    for p in np.asarray(pct, dtype=float):
        label = "unknown"
        for lo, hi, name in CLOSENESS_BINS:
            if lo <= p < hi:
                label = name
                break
        out.append(label)
    return out


def release_columns(run: RunDir) -> pd.DataFrame:
    """image_id plus the releasable audit columns (flags and the closeness bin)."""
    path = run.audit_table
    if not path.is_file():
        return pd.DataFrame({"image_id": pd.Series(dtype=str)})
    df = pd.read_parquet(path)
    if "image_id" not in df.columns:
        raise ValueError(f"{path}: no image_id column")
    keep = ["image_id"] + [c for c in df.columns if c.endswith("_flag") or c == "flagged"]
    out = df[keep].copy()
    if "closeness" in df.columns:
        pct = df["closeness"].to_numpy(dtype=float)
        out["closeness"] = closeness_bin(pct * 100)  # holdout percentile is a share in [0, 1]
    return out
