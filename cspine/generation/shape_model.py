"""The conditions of a conditional run: training labels, the statistical shape model, and what each sample gets.

Where it sits: `cspine train` reads the train split's ``labels`` (curvature class, 23 keypoints in the pixel
cache's frame) with :func:`train_conditions`, fits :func:`fit_shape_model` on them and writes it to
``model/shape_model.json`` (and into the exported pipeline's model_index.json, so the released pipeline draws
layouts from it). `cspine sample` reads it back to plan how many images of each class to draw
(:func:`class_counts`) and the layout of image ``i`` of class ``k`` (:func:`sample_layout`, seeded by stream
``(4, k, i)`` of cspine.generation.seeds only).

The shape model: per curvature class the mean of the 46 coordinates and the leading PCA modes (``stddev``,
unit ``components``), keeping the fewest modes that explain 95% of the variance, at most ``shape_modes``.
Privacy: the model ships with the weights, so it must summarise many patients, never describe one. A class
with fewer than ``min_class_images`` labelled training images gets the pooled model of all labelled images
(marked ``"pooled": true``), and the number of modes never exceeds n/5 of the images it was fitted on; a
class mean over >= min_class_images patients and a few variance directions do not reproduce any patient.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cspine.generation.hub_pipeline import CLASS_NAMES, layout_from_z
from cspine.labels import KEYPOINT_LABELS
from cspine.rundata import curvature_value, keypoint_array, labels_cell
from cspine.generation.seeds import stream_seed

FORMAT = 1
#: Share of the shape variance the kept modes explain (at most ``shape_modes`` of them).
VARIANCE_KEPT = 0.95


def train_conditions(index: pd.DataFrame, image_ids: list[str], source: str = "data/index.parquet") -> tuple[np.ndarray, np.ndarray]:
    """(classes int64 [N], 0 = none; keypoints float32 [N, 23, 2], NaN = none) for ``image_ids`` in order, from
    the index's ``labels`` (cspine.rundata's readers; a malformed cell is a RunDataError naming ``source`` and the
    image). An incomplete keypoint set counts as none."""
    by_id = dict(zip(index["image_id"].astype(str), index["labels"]))
    classes = np.zeros(len(image_ids), dtype=np.int64)
    points = np.full((len(image_ids), len(KEYPOINT_LABELS), 2), np.nan, dtype=np.float32)
    for j, iid in enumerate(image_ids):
        where = f"{source} (image {iid})"
        labels = labels_cell(by_id.get(iid), where)
        classes[j] = curvature_value(labels.get("curvature"), where)
        pts = keypoint_array(labels.get("keypoints"), where)
        if np.isfinite(pts).all():
            points[j] = pts
    return classes, points


def _fit(flat: np.ndarray, max_modes: int) -> dict:
    mean = flat.mean(axis=0)
    if len(flat) < 2:
        return {"n": len(flat), "mean": mean.round(4).tolist(), "stddev": [], "components": []}
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    var = s ** 2 / (len(flat) - 1)
    share = np.cumsum(var) / max(var.sum(), 1e-12)
    m = int(np.searchsorted(share, VARIANCE_KEPT) + 1)
    m = max(0, min(m, max_modes, len(flat) // 5))
    return {"n": len(flat), "mean": mean.round(4).tolist(), "stddev": np.sqrt(var[:m]).round(5).tolist(),
            "components": vt[:m].round(6).tolist()}


def fit_shape_model(classes: np.ndarray, points: np.ndarray, resolution: int, max_modes: int,
                    min_class_images: int, map_sigma: float = 1.0) -> dict:
    """The shape model (see the module docstring) of training images with classes and keypoints.

    ``class_counts`` counts every labelled training image per class (with or without keypoints): the
    training distribution `cspine sample` reproduces by default."""
    has_kp = ~np.isnan(points).any(axis=(1, 2))
    flat = points.reshape(len(points), -1).astype(np.float64)
    out = {"format": FORMAT, "labels": list(KEYPOINT_LABELS), "resolution": int(resolution),
           "class_names": {str(k): v for k, v in CLASS_NAMES.items()},
           "class_counts": {str(k): int((classes == k).sum()) for k in CLASS_NAMES},
           "min_class_images": int(min_class_images), "map_sigma": float(map_sigma), "classes": {}}
    labelled = has_kp & (classes > 0)
    pooled_rows = flat[labelled] if labelled.any() else flat[has_kp]
    if len(pooled_rows) < min_class_images:
        out["classes"] = {}
        return out  # too few keypoint sets to summarise without describing individuals: no layouts
    pooled = _fit(pooled_rows, max_modes)
    for k in CLASS_NAMES:
        rows = flat[has_kp & (classes == k)]
        out["classes"][str(k)] = ({**_fit(rows, max_modes), "pooled": False} if len(rows) >= min_class_images
                                  else {**pooled, "pooled": True})
    return out


def write_shape_model(path: Path, model: dict) -> None:
    from cspine import atomic

    atomic.write_json(path, model)


def read_shape_model(path: Path) -> dict | None:
    """model/shape_model.json, or None when the run has none (an unconditional model)."""
    if not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); retrain with `cspine train --no-resume`") from None


def sample_layout(shape_model: dict, seed: int, k: int, i: int, resolution: int) -> np.ndarray | None:
    """Keypoints [23, 2] of image ``i`` of class ``k``: a pure function of (seed, k, i) and the model, or None
    when the model has no layouts."""
    cls = shape_model.get("classes", {}).get(str(k))
    if cls is None:
        return None
    z = np.random.default_rng(stream_seed(seed, 4, k, i)).standard_normal(len(cls["stddev"]))
    return layout_from_z(shape_model, k, z, resolution)


def keypoints_json(points: np.ndarray | None) -> str | None:
    """``{label: [x, y]}`` JSON of keypoints [23, 2] (the format of data/index.parquet ``labels.keypoints``)."""
    if points is None:
        return None
    return json.dumps({name: [round(float(x), 3), round(float(y), 3)] for name, (x, y) in zip(KEYPOINT_LABELS, points)})


def class_counts(per_class, num_images: int, train_counts: dict | None) -> dict[int | None, int]:
    """How many images of each class (None = unconditional) to draw per checkpoint.

    ``per_class``: "train" (num_images split in the proportions of the training images' classes, largest
    remainder), "balanced" (split evenly, the remainder to the lowest classes), "unconditional", or an explicit
    {class: count} table (num_images is then not used). Without class counts (an unconditional model, or no
    labelled training image) everything is unconditional."""
    if per_class == "unconditional" or not train_counts or not any(train_counts.values()):
        return {None: num_images}
    if isinstance(per_class, dict):
        return {int(k): int(v) for k, v in sorted(per_class.items()) if int(v) > 0}
    if per_class == "balanced":
        weights = {k: 1.0 for k in CLASS_NAMES}
    elif per_class == "train":
        weights = {k: float(train_counts.get(str(k), 0)) for k in CLASS_NAMES}
    else:
        raise ValueError(f"unknown sample.per_class {per_class!r}")
    total = sum(weights.values())
    exact = {k: num_images * w / total for k, w in weights.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    left = num_images - sum(counts.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:left]:
        counts[k] += 1
    return {k: v for k, v in counts.items() if v > 0}
