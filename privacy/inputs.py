"""Reading what the audit compares from a run directory: training, holdout and synthetic images.

Where it sits: first step of `cspine audit`. Training and holdout images come from ``data/index.parquet``
and the pixel cache ``data/pixels.npy`` (uint16 [N, R, R]); synthetic images from
``samples/samples.parquet`` and the PNG files it lists; all are read through the run-data layer
(cspine.rundata), whose :class:`~cspine.rundata.RunDataError` names a missing or malformed file.
Everything is returned as uint16 [n, R, R] (8-bit samples are widened; samples of another size are resized
to R with a note). An index without training or holdout images raises :class:`AuditInputError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cspine import rundata
from cspine.errors import StageError
from cspine.rundir import RunDir


class AuditInputError(StageError):
    """The run's data cannot be audited (no training or no holdout images); the message names the file."""


@dataclass
class AuditInputs:
    train_ids: list[str]
    train: np.ndarray
    holdout_ids: list[str]
    holdout: np.ndarray
    synth_ids: list[str]
    synth: np.ndarray
    synth_files: list[str]  # relative to samples/
    notes: list[str] = field(default_factory=list)

    @property
    def resolution(self) -> int:
        return int(self.train.shape[-1])


def load_inputs(run: RunDir) -> AuditInputs:
    """Read train/holdout pixels and synthetic images of ``run``; see the module docstring."""
    index = rundata.real_index(run)
    train = rundata.real_images(run, "train", index)
    holdout = rundata.real_images(run, "holdout", index)
    if len(train) == 0:
        raise AuditInputError(f"{run.index} has no training images")
    if len(holdout) == 0:
        raise AuditInputError(
            f"{run.index} has no holdout images: the audit calibrates its thresholds on them "
            "(set data.holdout_fraction > 0 and rerun `cspine prepare`)"
        )
    R = int(train.pixels.shape[-1])
    table = rundata.samples_table(run)
    synth = rundata.sample_images(run, table, progress=len(table) >= 2000, size=R)
    notes: list[str] = []
    if synth.resized:
        notes.append(f"{synth.resized} synthetic images were not {R}x{R} and were resized to it for the comparison")
    return AuditInputs(
        train_ids=train.ids, train=train.pixels, holdout_ids=holdout.ids, holdout=holdout.pixels,
        synth_ids=synth.ids, synth=synth.pixels, synth_files=synth.files, notes=notes,
    )
