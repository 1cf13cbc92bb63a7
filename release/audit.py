"""What packaging takes from the privacy audit: the release gate and the per-image nearest-neighbour scores.

The gate is read with ``privacy.gate.read_gate`` (the privacy package owns its meaning). The scores kept in
the released shards are ``{method}_score`` (released as ``{method}_nn_distance``), ``{method}_flag`` and
``flagged`` from ``audit/audit.parquet``;
the ``{method}_nn_id`` columns name *training* images and are never released.
"""

from __future__ import annotations

import pandas as pd

from cspine.rundir import RunDir
from privacy.gate import Gate, read_gate as privacy_read_gate

__all__ = ["Gate", "read_gate", "score_columns"]


def read_gate(run: RunDir) -> Gate:
    """The audit's verdict for ``run`` (passed, image ids to leave out, why), as the privacy package decides it."""
    return privacy_read_gate(run)


def score_columns(run: RunDir) -> pd.DataFrame:
    """image_id plus the releasable audit columns (scores and flags), or just image_id when there is no table."""
    path = run.audit / "audit.parquet"
    if not path.is_file():
        return pd.DataFrame({"image_id": pd.Series(dtype=str)})
    df = pd.read_parquet(path)
    if "image_id" not in df.columns:
        raise ValueError(f"{path}: no image_id column")
    keep = ["image_id"] + [c for c in df.columns if c.endswith("_score") or c.endswith("_flag") or c == "flagged"]
    # Released under names that say what the numbers are: `inception_score` would read as the Inception
    # Score metric, while it is the distance to the nearest training image (lower = closer).
    return df[keep].rename(columns={c: c[: -len("_score")] + "_nn_distance" for c in keep if c.endswith("_score")})
