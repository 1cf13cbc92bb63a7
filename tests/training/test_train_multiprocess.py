"""Real multi-process training: `accelerate launch` of two CPU processes (gloo, two OS processes).

accelerate 1.15's ``launch --cpu --num_processes 2`` starts ONE process (its multi-CPU launcher is
mpirun, used only with an MPI hostfile), so the test launches as a multi-GPU run forced onto the CPU:
``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2``: torchrun's two processes,
which accelerate joins into one gloo group. The driver checks it really got two.

Through tests/training/mp_train_driver.py, which calls training.train.train: a tiny run with
``mixed_precision: auto`` trains 5 steps and is stopped (the stop_after hook, as a kill), leaving the
step-3 checkpoint; a second launch resumes it to step 8. Checked against independent references:
- each process trained on exactly ``batch_indices(n, seed, micro, batch, rank, 2)``, and per epoch the
  two processes together saw every image once, the same images as one process with twice the batch;
- the replayed steps 4 and 5 have the losses the first launch had (the resumed state is exact);
- both processes trained with the same precision record (the main process's choice, broadcast);
- the loss log and checkpoints look like a single-process run's, and the summary says 2 processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tests.fakerun import REPO, make_fake_run
from tests.training.test_train import loss_rows
from training.checkpoints import list_checkpoints
from training.train_data import batch_indices

DRIVER = Path(__file__).with_name("mp_train_driver.py")
N_TRAIN, BATCH, WORLD, SEED = 40, 4, 2, 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(run_root: Path, log_dir: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(WORLD),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(DRIVER), str(run_root), str(log_dir),
           "--set", "train.mixed_precision=auto", "--set", "train.num_threads=1", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"accelerate launch failed ({proc.returncode}):\n{proc.stderr[-4000:]}"


def read_log(log_dir: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (log_dir / f"rank{rank}.jsonl").read_text().splitlines()]


def test_two_processes_train_stop_resume_with_the_single_process_data_order(tmp_path):
    root = tmp_path / "run"
    run = make_fake_run(root, n_train=N_TRAIN, size=32, with_model=False)
    first, second = tmp_path / "log1", tmp_path / "log2"

    launch(root, first, "--stop-after", "5")
    assert list_checkpoints(run) == [3]
    assert [int(r["step"]) for r in loss_rows(run)] == [1, 2, 3, 4, 5]
    assert not (run.pipeline / "model_index.json").exists()
    launch(root, second)
    assert list_checkpoints(run) == [6, 8]
    assert [int(r["step"]) for r in loss_rows(run)] == list(range(1, 9))
    summary = json.loads((run.model / "train_summary.json").read_text())
    assert summary["processes"] == WORLD and summary["resumed_from"] == 3 and summary["step"] == 8

    logs = {(launch_no, r): read_log(d, r) for launch_no, d in ((1, first), (2, second)) for r in range(WORLD)}
    for (launch_no, rank), rows in logs.items():
        assert all(e["world"] == WORLD and e["rank"] == rank for e in rows)
        ends = [e["kind"] for e in rows if e["kind"] in ("interrupted", "done")]
        assert ends == (["interrupted"] if launch_no == 1 else ["done"])

    # Each process trained on exactly its slice of the global stream (independent reference: batch_indices).
    batches = {}
    for (launch_no, rank), rows in logs.items():
        for e in rows:
            if e["kind"] == "batch" and e["world_arg"] == WORLD:
                assert e["rank_arg"] == rank and e["n"] == N_TRAIN and e["batch_size"] == BATCH
                np.testing.assert_array_equal(e["rows"], batch_indices(N_TRAIN, SEED, e["micro"], BATCH, rank, WORLD))
                batches.setdefault((launch_no, rank), []).append(e["micro"])
    assert batches[(1, 0)] == batches[(1, 1)] == [0, 1, 2, 3, 4]
    assert batches[(2, 0)] == batches[(2, 1)] == [3, 4, 5, 6, 7]  # resumed after the step-3 checkpoint

    # Per epoch the two processes see every image once, the same images as one process at twice the batch.
    per_epoch = N_TRAIN // (BATCH * WORLD)
    for epoch in range(2):
        micros = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        two = np.concatenate([batch_indices(N_TRAIN, SEED, m, BATCH, r, WORLD) for m in micros for r in range(WORLD)])
        one = np.concatenate([batch_indices(N_TRAIN, SEED, m, BATCH * WORLD) for m in micros])
        assert sorted(two) == list(range(N_TRAIN))
        np.testing.assert_array_equal(two, one)

    # The replayed steps reproduce the first launch's losses; the log keeps the resumed ones.
    loss1 = {e["step"]: e["loss"] for e in logs[(1, 0)] if e["kind"] == "step"}
    loss2 = {e["step"]: e["loss"] for e in logs[(2, 0)] if e["kind"] == "step"}
    assert sorted(loss1) == [1, 2, 3, 4, 5] and sorted(loss2) == [4, 5, 6, 7, 8]
    np.testing.assert_allclose([loss2[4], loss2[5]], [loss1[4], loss1[5]], rtol=1e-5)
    # the logged loss is the mean over processes, so both processes report the same value
    assert loss1 == {e["step"]: e["loss"] for e in logs[(1, 1)] if e["kind"] == "step"}
    logged = pd.DataFrame(loss_rows(run)).astype({"step": int, "loss": float})
    np.testing.assert_allclose(logged["loss"], [loss1[s] for s in range(1, 4)] + [loss2[s] for s in range(4, 9)],
                               atol=1e-6)

    # One precision for both processes: measured once per launch 1, kept on resume.
    records = {k: [e["record"] for e in rows if e["kind"] == "precision"] for k, rows in logs.items()}
    assert all(len(v) == 1 for v in records.values())
    first_choice = records[(1, 0)][0]
    assert first_choice["how"] == "measured" and records[(1, 1)][0] == first_choice
    assert records[(2, 0)][0] == records[(2, 1)][0] == first_choice
    assert summary["precision"] == first_choice
