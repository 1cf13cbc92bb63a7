"""`cspine release` and `cspine publish` to the local hub folder: the stage order derived from the stage table,
the printed load lines (which must work as printed), that a local publish is read by load_dataset(path) and
from_pretrained(path), and that nothing goes to a remote Hub unless asked for."""

from __future__ import annotations

import subprocess
import sys

from cspine.cli import main as cspine
from cspine.stages import STAGES, load_config, release_stages


def test_stage_order(demo_config):
    cfg = load_config(demo_config)
    assert [s.name for s in release_stages(cfg)] == ["demo-data", "prepare", "train", "sample", "audit", "evaluate",
                                                      "package", "publish"]
    off = load_config(demo_config, {"evaluate.enabled": False, "data.source": "csxa"})
    assert [s.name for s in release_stages(off)] == ["prepare", "train", "sample", "audit", "package", "publish"]
    assert [s.name for s in release_stages(cfg)] == [s.name for s in STAGES]  # one order, the table's


def _common(run, hub=None):
    out = ["--config", str(run.config)]
    return out + (["--set", f"release.local_hub={hub}"] if hub else [])


def test_local_publish_and_printed_lines_work(audited_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token_but_present")  # a token alone never means "upload"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    run = audited_run
    hub = tmp_path / "hub"
    assert cspine(["package", *_common(run, hub)]) == 0
    capsys.readouterr()
    assert cspine(["publish", *_common(run, hub)]) == 0
    out = capsys.readouterr().out
    assert (hub / "owner" / "synthetic-cspine" / "data").is_dir()
    before = {p: p.stat().st_mtime_ns for p in hub.rglob("*") if p.is_file()}
    assert cspine(["publish", *_common(run, hub)]) == 0  # same release: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in hub.rglob("*") if p.is_file()} == before
    assert cspine(["verify", str(hub / "owner" / "synthetic-cspine")]) == 0

    assert str(hub) in out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("from ")]
    assert len(lines) == 2
    code = "\n".join(lines) + "\nimport sys\nprint(len(ds), type(pipe).__name__, pipe.unet.config.sample_size)\n"
    env_code = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                              env={"HF_HOME": str(tmp_path / "hf-home"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert env_code.returncode == 0, env_code.stderr[-3000:]
    n_released = len(__import__("pandas").read_parquet(run.samples_table)) - len(
        __import__("json").loads(run.audit_summary.read_text())["excluded"])
    assert env_code.stdout.split()[-3:] == [str(n_released), "DDPMPipeline", "64"]


def test_release_help_lists_what_it_runs(capsys):
    try:
        cspine(["release", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "demo-data" in out and "package" in out and "publish" in out


def test_help_leads_to_the_code(capsys):
    try:
        cspine(["--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    for module in ("training.cli_model", "privacy.cli", "release.commands", "evaluation.cli", "reader_study.cli"):
        assert module in out
    assert "Exit codes" in out


def test_publish_without_package_or_target_says_what_to_do(audited_run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    common = _common(audited_run)
    assert cspine(["publish", *common]) == 2  # nothing packaged yet
    assert "cspine package" in capsys.readouterr().err
    assert cspine(["package", *common]) == 0
    assert cspine(["publish", *common, "--set", "release.local_hub=null"]) == 2
    assert "local_hub" in capsys.readouterr().err
    assert cspine(["publish", *common, "--hub"]) == 2  # asked for the Hub, but there is no token
    err = capsys.readouterr().err
    assert "HF_TOKEN" in err and "--local" in err
