"""Killing `cspine package` half way (SIGKILL, in the middle of writing a shard) and re-running it leaves no
partial shard, keeps the shards that were finished, and ends with a manifest that `cspine verify` accepts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

from cspine.cli import main as cspine
from tests.fakerun import REPO

# Runs the real `cspine package`, but the writer of the third shard stops after its first row group, says so
# through a file, and waits: the test then kills the process, as a crash or an impatient user would.
HANG = r"""
import sys, time, pathlib
import pyarrow.parquet as pq
from release import shards
signal_file = pathlib.Path(sys.argv[1])
calls = {"n": 0}
class HangingWriter(pq.ParquetWriter):
    def write_table(self, table, row_group_size=None):
        calls["n"] += 1
        if calls["n"] == 3:
            super().write_table(table.slice(0, 1), row_group_size=1)
            signal_file.write_text("writing shard 3")
            time.sleep(600)
        super().write_table(table, row_group_size=row_group_size)
shards.pq.ParquetWriter = HangingWriter
from cspine.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_kill_mid_shard_then_rerun(audited_run, tmp_path, demo_config):
    run = audited_run
    args = ["package", "--config", str(run.config),
            "--set", "release.shard_size_mb=0.02"]
    flag = tmp_path / "hanging"
    proc = subprocess.Popen([sys.executable, "-c", HANG, str(flag), *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while not flag.exists():
            assert proc.poll() is None, "package ended before the third shard"
            assert time.time() - t0 < 90, "package did not reach the third shard"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    data = run.release_dataset / "data"
    finished = sorted(data.glob("train-*.parquet"))
    partial = list(data.glob(".tmp-*"))
    assert len(finished) == 2 and partial, "expected two finished shards and one partial temp file"
    assert not (run.release_dataset / "manifest.json").exists()
    assert cspine(["verify", str(run.release_dataset)]) == 1  # an unfinished release is not accepted
    kept = {p.name: p.stat().st_mtime_ns for p in finished}

    assert cspine(args) == 0
    assert not list(run.release.rglob(".tmp-*"))
    assert cspine(["verify", str(run.release_dataset)]) == 0
    shards = sorted(data.glob("train-*.parquet"))
    assert len(shards) > 3
    for name, mtime in kept.items():  # finished shards were not rewritten
        assert (data / name).stat().st_mtime_ns == mtime
    for p in shards:
        pq.read_table(p)  # every shard is complete Parquet
