"""`cspine release` and `cspine publish` to the local hub folder: the stage order, the final load lines (which
must work as printed), and that a local publish is read by load_dataset(path) and from_pretrained(path)."""

from __future__ import annotations

import subprocess
import sys

from cspine.config import load_config
from cspine.rundir import RunDir
from release.chain import load_lines, stage_list
from release.cli import main as cspine


def test_stage_order(demo_config):
    cfg = load_config(demo_config)
    assert stage_list(cfg) == ["demo-data", "prepare", "train", "sample", "audit", "evaluate", "package", "publish"]
    off = load_config(demo_config, {"evaluate.enabled": False, "data.source": "csxa"})
    assert stage_list(off) == ["prepare", "train", "sample", "audit", "package", "publish"]


def test_local_publish_and_printed_lines_work(audited_run, demo_config, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login either
    run = audited_run
    hub = tmp_path / "hub"
    common = ["--config", str(demo_config), "--run-dir", str(run.root), "--set", f"release.local_hub={hub}"]
    assert cspine(["package", *common, "--workers", "1"]) == 0
    assert cspine(["publish", *common]) == 0
    assert (hub / "owner" / "synthetic-cspine" / "data").is_dir()
    before = {p: p.stat().st_mtime_ns for p in hub.rglob("*") if p.is_file()}
    assert cspine(["publish", *common]) == 0  # same release: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in hub.rglob("*") if p.is_file()} == before
    assert cspine(["verify", str(hub / "owner" / "synthetic-cspine")]) == 0

    cfg = load_config(demo_config, {"release.local_hub": str(hub), "run_dir": str(run.root)})
    where, lines = load_lines(cfg, RunDir(run.root))
    assert str(hub) in where and len(lines) == 2
    code = "\n".join(lines) + "\nimport sys\nprint(len(ds), type(pipe).__name__, pipe.unet.config.sample_size)\n"
    env_code = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                              env={"HF_HOME": str(tmp_path / "hf-home"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert env_code.returncode == 0, env_code.stderr[-3000:]
    assert env_code.stdout.split()[-3:] == ["23", "DDPMPipeline", "64"]


def test_release_help_lists_what_it_runs(capsys):
    try:
        cspine(["release", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "demo-data" in out and "package" in out and "publish" in out


def test_publish_without_token_or_local_hub_says_what_to_do(audited_run, demo_config, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    common = ["--config", str(demo_config), "--run-dir", str(audited_run.root)]
    assert cspine(["publish", *common]) == 1  # nothing packaged yet
    assert "cspine package" in capsys.readouterr().err
    assert cspine(["package", *common, "--workers", "1"]) == 0
    assert cspine(["publish", *common, "--set", "release.local_hub=null"]) == 1
    err = capsys.readouterr().err
    assert "HF_TOKEN" in err and "local_hub" in err
