"""The blinding check of `cspine study build`: a study whose real images carry the old zero padding is
refused (exit 1) with the tell named, whatever the tone policy, and built only with --allow-tells, which
blinding.json records; a study without tells is built, and the table goes into study/summary.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cspine.cli import main
from reader_study.blinding import BlindingTells
from reader_study.build import StudyPaths, build_study
from tests.reader_study.conftest import study_config


def _pad_real_images_the_old_way(run) -> None:
    """What `prepare` used to do with a non-square radiograph: scale the long side to the resolution and pad
    the short side with exact-zero bars (here a 4:5 portrait image in a 64 px cache: 51 px wide, bars of 6-7)."""
    from PIL import Image

    px = np.load(run.pixels)
    out = np.zeros_like(px)
    for i, img in enumerate(px):
        narrow = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((51, 64), Image.Resampling.LANCZOS))
        out[i, :, 6:57] = np.clip(np.rint(narrow), 0, 65535).astype(np.uint16)
    np.save(run.pixels, out)


def test_a_study_without_tells_is_built_and_its_table_recorded(study_run):
    build_study(study_config(study_run), study_run)
    paths = StudyPaths(study_run)
    rep = json.loads((paths.root / "blinding.json").read_text())
    # the default tone policy: every served file holds the same 8-bit histogram, so every rule on a
    # histogram statistic ties in every trial (chance, exactly)
    assert rep["tone"]["policy"] == "match"
    for r in rep["rules"]:
        if r["statistic"] in ("black_share", "saturated_share", "mean", "std", "skewness", "entropy"):
            assert r["hit_rate"] == pytest.approx(0.25) and rep["auc"][r["statistic"]]["auc_real_higher"] == 0.5
    assert rep["tells"] == [] and rep["verdict"] == "no tell found" and rep["allow_tells"] is False
    assert {r["statistic"] for r in rep["rules"]} >= {"border_mean", "black_share", "std", "hf_energy", "file_size"}
    assert rep["n_trials"] == 10 and rep["n_real"] == 10 and rep["n_synthetic"] == 30
    assert 0.0 <= rep["c2st"]["auc"] <= 1.0 and rep["c2st"]["ci95"][0] <= rep["c2st"]["auc"] <= rep["c2st"]["ci95"][1]
    # the served files are all the same size: the file-size rule can only tie (chance)
    fs = [r for r in rep["rules"] if r["statistic"] == "file_size"]
    assert all(r["hit_rate"] == pytest.approx(0.25) for r in fs)
    assert "blinding.json" not in paths.study_json.read_text()
    # the study's summary (included by the dataset card) carries the table
    from reader_study.analyze import run_analysis
    from reader_study.simulate import simulate

    simulate(paths, 2, "chance", 0)
    run_analysis(paths, 50, 0, 0.05, include_simulated=True)
    text = paths.summary.read_text()
    assert "**Blinding check**" in text and "| border_mean |" in text and "Classifier two-sample test" in text


def test_old_padding_is_refused_named_and_allowed_only_on_request(study_run, capsys):
    _pad_real_images_the_old_way(study_run)
    cfg = study_config(study_run)
    paths = StudyPaths(study_run)
    with pytest.raises(BlindingTells, match="border_mean|black_share|corner_mean"):
        build_study(cfg, study_run)
    rep = json.loads((paths.root / "blinding.json").read_text())
    assert rep["verdict"].startswith("refused")
    # served with the study's common tone (the default), every file has the same histogram: the bars are no
    # longer exactly black, so the black-share rule scores chance, but they are still dark at the border
    tells = {r["statistic"] for r in rep["rules"] if r["tell"]}
    assert "border_mean" in tells and rep["tone"]["policy"] == "match"
    black = next(r for r in rep["rules"] if r["statistic"] == "black_share" and r["rule"] == "pick the highest")
    assert black["hit_rate"] == pytest.approx(0.25) and not black["tell"]
    # served as they are, the exact-black bars are a tell of their own
    with pytest.raises(BlindingTells):
        build_study(study_config(study_run, tone="as_is"), study_run)
    rep = json.loads((paths.root / "blinding.json").read_text())
    assert {"black_share", "border_mean"} <= {r["statistic"] for r in rep["rules"] if r["tell"]}
    black = next(r for r in rep["rules"] if r["statistic"] == "black_share" and r["rule"] == "pick the highest")
    assert black["hits"] == 10 and black["p_holm"] < 0.01
    # nothing a rater could be served is left behind
    assert not paths.study_json.exists() and not paths.assets.exists()
    assert not list(paths.root.glob(".tmp-assets-*"))

    # the command: exit 1 and one line naming the tell and the override
    cfg_file = study_run.root / "config.yaml"
    argv = ["study", "build", "--config", str(cfg_file), "--run-dir", str(study_run.root),
            "--set", "study.trials=10", "--set", "study.image_size=96", "--set", "study.raters=3"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "tell" in err and "--allow-tells" in err and "Traceback" not in err

    assert main(argv + ["--allow-tells"]) == 0
    rep = json.loads((paths.root / "blinding.json").read_text())
    assert rep["allow_tells"] is True and rep["verdict"].startswith("built despite tells")
    assert paths.study_json.exists()
    built = paths.study_json.read_text()

    # a refused rebuild (another design) leaves the served study and its table alone, and says why apart
    assert main(argv[:-2] + ["--set", "study.raters=3", "--set", "study.trials=9"]) == 1
    assert paths.study_json.read_text() == built
    assert json.loads((paths.root / "blinding.json").read_text()) == rep
    refused = json.loads((paths.root / "blinding-refused.json").read_text())
    assert refused["verdict"].startswith("refused") and refused["n_trials"] == 9
    assert "blinding-refused.json" in capsys.readouterr().err
