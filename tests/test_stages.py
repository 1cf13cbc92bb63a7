"""The stage table as the one composition root: adding a stage is one command module plus one row; every stage
keeps a provenance record; config.yaml is written once; a `--set` on a later stage leaves the earlier records
as they were; and `cspine --help` leads to the code in two hops."""

from __future__ import annotations

import argparse
import json

import pytest

from cspine import atomic, provenance, stages
from cspine.cli import main as cspine
from cspine.command import Command
from cspine.stages import Stage


# -- a tiny extra stage, as a new package would add it -------------------------------------------------------------

def _tally_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--greeting", default="hello", help="what to write")


def _tally_run(cfg, run, args) -> int:
    """Count the samples into tally/count.json (reads samples/, writes only its own folder)."""
    import pandas as pd

    n = len(pd.read_parquet(run.samples_table))
    atomic.write_json(run.root / "tally" / "count.json", {"n": n, "greeting": args.greeting})
    return n


TALLY = Command("Count the synthetic images (a test stage).", _tally_run,
                lambda n, cfg, run: f"tally: {n} samples", _tally_arguments)
TALLY_ROW = Stage("tally", "count the synthetic images", TALLY, folder=lambda cfg, run: run.root / "tally",
                  inputs=lambda cfg, run: {"samples": stages.rundata.samples_fp(run)},
                  outputs=lambda cfg, run: {"count.json": stages.rundata.sha256_memo(run.root / "tally" / "count.json")},
                  needs=("sample",))


@pytest.fixture()
def with_tally(monkeypatch):
    table = list(stages.STAGES)
    table.insert([s.name for s in table].index("audit"), TALLY_ROW)  # the one row
    monkeypatch.setattr(stages, "STAGES", tuple(table))


def test_a_new_stage_is_one_row(with_tally, fake_run, capsys):
    try:
        cspine(["--help"])
    except SystemExit:
        pass
    assert "tally" in capsys.readouterr().out and "tests.test_stages" in stages.STAGES[4].command.module
    assert [s.name for s in stages.release_stages(stages.load_config(fake_run.config))][4] == "tally"
    assert cspine(["tally", "--config", str(fake_run.config), "--greeting", "hi"]) == 0
    assert json.loads((fake_run.root / "tally" / "count.json").read_text()) == {"n": 24, "greeting": "hi"}
    rec = provenance.read_record(fake_run.root / "tally")
    assert rec["complete"] and rec["inputs"]["samples"]["images"] and rec["outputs"]["count.json"] != "missing"
    capsys.readouterr()
    assert cspine(["tally", "--config", str(fake_run.config)]) == 0
    assert "tally: up to date" in capsys.readouterr().out


def test_set_on_a_later_stage_leaves_earlier_records_and_config_yaml(fake_run, capsys):
    config_before = fake_run.config.read_bytes()
    train_before = (fake_run.model / "record.json").read_bytes()
    assert cspine(["audit", "--config", str(fake_run.config), "--methods", "phash,dhash", "--no-progress",
                   "--exclude-flagged", "--set", "audit.top_k=2"]) == 0
    assert (fake_run.model / "record.json").read_bytes() == train_before
    assert fake_run.config.read_bytes() == config_before  # written once, when the run was created
    rec = provenance.read_record(fake_run.audit)
    assert rec["config"]["audit"]["top_k"] == 2 and rec["config"]["audit"]["methods"] == ["phash", "dhash"]
    log = fake_run.log.read_text()
    assert "command: cspine audit" in log and "audit.top_k=2" in log


def test_a_changed_config_key_reruns_and_says_which(fake_run, capsys):
    common = ["audit", "--config", str(fake_run.config), "--methods", "phash", "--no-progress", "--exclude-flagged"]
    assert cspine(common) == 0
    assert cspine(common) == 0
    assert "audit: up to date" in capsys.readouterr().out
    assert cspine([*common, "--set", "audit.top_k=3"]) == 0
    assert "top_k" in provenance.read_record(fake_run.audit)["reason"]


def test_missing_upstream_is_usage_error_naming_the_stage(tmp_path, capsys):
    from tests.fakerun import REPO

    rc = cspine(["sample", "--config", str(REPO / "configs" / "demo.yaml"), "--run-dir", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "`cspine train`" in err or "`cspine prepare`" in err
    assert "Traceback" not in err


def test_every_release_stage_has_a_record_folder_and_sections():
    for s in stages.STAGES:
        assert s.folder is not None, s.name
        assert set(s.sections) <= set(stages.SECTIONS), s.name
        assert all(n in [t.name for t in stages.STAGES] for n in s.needs), s.name


def test_a_stage_reads_only_its_own_sections(fake_run):
    cfg = stages.load_config(fake_run.config)
    view = stages.by_name("train").view(cfg)
    assert view.train == cfg.train and view.model == cfg.model and view.seed == cfg.seed
    for other in ("sample", "data", "audit", "release"):
        with pytest.raises(AttributeError):
            getattr(view, other)
    # so the record's config (its sections and the seed) is everything the stage could have read
    assert set(stages.by_name("train").config_of(cfg)) == {"seed", "model", "train"}


def test_a_sampled_checkpoint_must_be_kept_by_training(fake_run):
    from cspine.config import ConfigError

    with pytest.raises(ConfigError, match="train.keep_steps"):
        stages.load_config(fake_run.config, {"sample.checkpoints": ["step-5", "final"]})
    cfg = stages.load_config(fake_run.config, {"sample.checkpoints": ["step-5", "final"], "train.keep_steps": [5]})
    assert cfg.train.keep_steps == [5]
