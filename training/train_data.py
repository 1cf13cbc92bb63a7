"""The training data stream of `cspine train`: the pixel cache's train split and which rows each step sees.

Reads the train split of ``data/index.parquet`` and ``data/pixels.npy`` written by `cspine prepare` through
the run-data layer (cspine.rundata, which checks them); never decodes an image file. Which images a
micro-batch holds is a pure function of (seed, micro-step, rank, world) (:func:`batch_indices`), so a
resumed run and an uninterrupted one see the same batches, and several processes together see every image
once per epoch.

For a conditional model (``model.condition``) :func:`load_train_conditions` gives each training row's
curvature class (0 = none) and keypoints (NaN = none) from the index's ``labels``, in the same row order, and
:func:`condition_drop` which rows of a micro-batch train as unconditional (stream (5, micro, rank)).

Horizontal flips are NOT used: a lateral radiograph has a facing direction (the anterior side), and
flipping would teach the model mirror-image anatomy that no real film shows.
"""

from __future__ import annotations

import numpy as np
import torch

from cspine import rundata
from cspine.rundir import RunDir
from cspine.generation.seeds import stream_seed


def load_train_pixels(run: RunDir) -> torch.Tensor:
    """The train split of the pixel cache as float32 [N, 1, R, R] in [-1, 1] (rows in cache-row order)."""
    train = rundata.real_images(run, "train")
    if len(train) == 0:
        raise rundata.RunDataError(f"{run.index}: no rows with split == 'train'; nothing to train on")
    return torch.from_numpy(train.pixels.astype(np.float32) / 32767.5 - 1.0).unsqueeze(1)


def load_train_conditions(run: RunDir) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes int64 [N], keypoints float32 [N, 23, 2] with NaN rows for none) of the train split, in the
    row order of :func:`load_train_pixels`."""
    from cspine.generation.shape_model import train_conditions

    index = rundata.real_index(run)
    rows = index[index["split"] == "train"].sort_values("cache_row", kind="stable")
    classes, points = train_conditions(index, rows["image_id"].astype(str).tolist(), str(run.index))
    return torch.from_numpy(classes), torch.from_numpy(points)


def condition_drop(seed: int, micro: int, rank: int, n: int, drop_prob: float) -> torch.Tensor:
    """bool [n]: which images of micro-batch ``micro`` on ``rank`` lose class and layout (train as null)."""
    gen = torch.Generator("cpu").manual_seed(stream_seed(seed, 5, micro, rank))
    return torch.rand(n, generator=gen) < drop_prob


def batch_indices(n: int, seed: int, micro_step: int, batch_size: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Rows of micro-batch ``micro_step`` for process ``rank``: a pure function of its arguments.

    The global stream is a concatenation of per-epoch permutations (stream (1, epoch), cspine.generation.seeds); each
    micro-step takes ``batch_size * world`` consecutive positions and process ``rank`` its slice, so
    every image is seen once per epoch across all processes.
    """
    per_step = batch_size * world
    start = micro_step * per_step + rank * batch_size
    positions = np.arange(start, start + batch_size)
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(positions // n):
        perm = np.random.default_rng(stream_seed(seed, 1, int(epoch))).permutation(n)
        mask = positions // n == epoch
        out[mask] = perm[positions[mask] % n]
    return out
