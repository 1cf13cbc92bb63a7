"""The data commands through the real `cspine` entry point: demo-data then prepare on a tiny phantom,
re-runs that skip, and config errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cspine.rundir import INDEX_COLUMNS, RunDir
from cspine.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"


def _args(tmp_path: Path) -> list[str]:
    return ["-c", str(DEMO), "--run-dir", str(tmp_path / "run"), "--no-progress",
            "--set", f"data.path={tmp_path / 'raw'}", "--set", "data.resolution=32",
            "--set", "data.phantom.count=8", "--set", "data.phantom.cases=5",
            "--set", "data.phantom.height=128", "--set", "data.phantom.width=100"]


def test_demo_data_then_prepare_then_skip(tmp_path, capsys):
    assert main(["demo-data", *_args(tmp_path)]) == 0
    assert main(["prepare", *_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "8 phantom radiographs of 5 cases" in out and "prepare: 8 images" in out
    run = RunDir(tmp_path / "run")
    idx = pd.read_parquet(run.index)
    assert tuple(idx.columns) == INDEX_COLUMNS and np.load(run.pixels).shape == (8, 32, 32)
    assert main(["demo-data", *_args(tmp_path)]) == 0
    assert main(["prepare", *_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "demo-data: up to date" in out and "prepare: up to date" in out


def test_config_error_names_key_and_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("  resolution: 64", "  resolutoin: 64"))
    assert main(["prepare", "-c", str(bad), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "data.resolutoin" in err and str(bad) in err
    assert not (tmp_path / "run" / "data").exists()
    assert main(["demo-data", "-c", str(bad), "--run-dir", str(tmp_path / "run")]) == 2


def test_prepare_failure_is_exit_2_naming_the_report(tmp_path, capsys):
    raw = tmp_path / "in"
    raw.mkdir()
    (raw / "a.png").write_bytes(b"")
    (raw / "b.png").write_bytes(b"not a png")
    rc = main(["prepare", "-c", str(DEMO), "--run-dir", str(tmp_path / "run"), "--no-progress",
               "--set", "data.source=folder", "--set", f"data.path={raw}"])
    assert rc == 2  # bad input (too many bad files), by the one exit-code convention
    err = capsys.readouterr().err
    assert "ingest_report.json" in err and "data.max_bad_fraction" in err


def test_demo_data_refuses_to_write_into_real_data(tmp_path, capsys):
    rc = main(["demo-data", "-c", str(REPO / "configs" / "csxa-256.yaml"), "--run-dir", str(tmp_path / "run")])
    assert rc == 2 and "data.source" in capsys.readouterr().err


def test_help_explains_the_commands(capsys):
    for cmd in ("demo-data", "prepare"):
        try:
            main([cmd, "--help"])
        except SystemExit as e:
            assert e.code == 0
    out = capsys.readouterr().out
    assert "LabelMe" in out and "max_bad_fraction" in out and "MONOCHROME1" in out
