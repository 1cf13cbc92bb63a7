"""The loss log of `cspine train` (model/loss.csv): one row per optimizer step, continuous across resumes.

Columns: step, loss (mean over processes and micro-batches), lr (the rate the step used), ema_decay and
images_per_s. On resume the rows after the checkpoint are dropped first (:func:`truncate_loss_log`),
because those steps are replayed, so the log never has a gap or a duplicate step.
"""

from __future__ import annotations

import csv
from pathlib import Path

from cspine import atomic

LOSS_COLUMNS = ("step", "loss", "lr", "ema_decay", "images_per_s")


def truncate_loss_log(path: Path, last_step: int) -> None:
    """Keep the rows of ``path`` with step <= ``last_step`` (rows after a checkpoint are replayed on resume)."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= last_step]
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOSS_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


class LossLog:
    """Appends rows to the loss log (flushed per row); a no-op on processes other than the main one."""

    def __init__(self, path: Path, enabled: bool = True):
        self._fh = None
        self._writer = None
        if enabled:
            new_file = not path.is_file()
            self._fh = open(path, "a", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._fh, fieldnames=LOSS_COLUMNS)
            if new_file:
                self._writer.writeheader()

    def write(self, step: int, loss: float, lr: float, ema_decay: float, images_per_s: float) -> None:
        if self._writer is None:
            return
        self._writer.writerow(dict(step=step, loss=f"{loss:.6f}", lr=f"{lr:.6g}", ema_decay=f"{ema_decay:.6f}",
                                   images_per_s=f"{images_per_s:.2f}"))
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "LossLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
