"""Simulated studies with the expected results: raters at chance, and raters who always find the real image.

Through the whole chain (build -> simulate -> analyze, files included) on the small fixture study, and with
the pure analysis on a paper-sized study (8 raters x 50 quartets) for power."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reader_study.analyze import analyze, run_analysis
from reader_study.design import make_trials, rater_order
from reader_study.simulate import answer, simulate

GROUPS = ("step-100", "step-200", "final")


def paper_sized(policy, seed=0, raters=8, trials=50, k=4, likert=4):
    """study, key and answer rows of a simulated study, without files."""
    real = [f"r{i}" for i in range(trials)]
    synth = {g: [f"{g}-{i}" for i in range(trials)] for g in GROUPS}
    ts, _ = make_trials(real, synth, trials, k, seed)
    study = {"study_id": "x", "alternatives": k, "likert_points": likert, "n_trials": trials}
    key = {"study_id": "x", "groups": ["real", *GROUPS], "trials": [
        {"trial": t.index, "real_position": t.real_position,
         "alternatives": [{"position": p, "group": a.group, "kind": a.kind} for p, a in enumerate(t.alternatives)]}
        for t in ts]}
    rows = []
    for r in range(1, raters + 1):
        rng = np.random.default_rng([seed, r])
        for step, trial in enumerate(rater_order(seed, r, trials)):
            choice, scores = answer(policy, ts[trial].real_position, k, likert, rng)
            rows.append(dict(rater_id=f"R{r:02d}", step=step, trial=trial, choice=choice, scores=scores, simulated=True))
    return study, key, rows


def test_chance_raters_paper_sized():
    res = analyze(*paper_sized("chance"), n_boot=500)
    acc = res["accuracy"]["pooled"]
    assert acc["n"] == 400
    assert acc["ci_low"] < 0.25 < acc["ci_high"]
    assert acc["p_binomial_two_sided"] > 0.05
    assert abs(res["agreement"]["on_choice"]["fleiss_kappa"]) < 0.05
    mr = res["mrmc_bootstrap"]["accuracy"]
    assert mr["ci_low"] < 0.25 < mr["ci_high"]
    for g in GROUPS:
        assert abs(res["realism"][g]["mean"] - 2.5) < 0.3
        assert res["paired_tests"]["by_response"][g]["wilcoxon_p_holm"] > 0.05
    assert res["simulated"] is True


def test_perfect_raters_paper_sized():
    res = analyze(*paper_sized("perfect"), n_boot=500)
    acc = res["accuracy"]["pooled"]
    assert acc["accuracy"] == 1.0 and acc["p_binomial_two_sided"] < 1e-100 and acc["ci_low"] > 0.99
    assert all(v["accuracy"] == 1.0 for v in res["accuracy"]["per_rater"].values())
    assert res["agreement"]["on_choice"]["fleiss_kappa"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in res["agreement"]["on_choice"]["cohen_kappa"].values())
    assert res["realism"]["real"]["mean"] == 4 and all(res["realism"][g]["mean"] == 1 for g in GROUPS)
    for g in GROUPS:
        t = res["paired_tests"]["by_response"][g]
        assert t["mean_difference"] == 3 and t["wilcoxon_p_holm"] < 1e-10
    assert res["mrmc_bootstrap"]["accuracy"]["ci_low"] == 1.0
    assert res["accuracy"]["chosen_group_counts"] == {"real": 400, **{g: 0 for g in GROUPS}}


def test_chain_build_simulate_analyze_writes_outputs(built_study):
    cfg, run, paths = built_study
    simulate(paths, 4, "perfect", seed=1)
    res = run_analysis(paths, n_boot=200, seed=0, alpha=0.05)
    assert res["n_raters"] == 4 and res["n_answers"] == 40 and res["simulated"]
    assert res["accuracy"]["pooled"]["accuracy"] == 1.0
    saved = json.loads(paths.results.read_text())
    assert saved["accuracy"]["pooled"]["correct"] == 40
    md = paths.summary.read_text()
    assert not md.startswith("# ") and "Simulated raters" in md and "figures/accuracy_per_rater.png" in md
    assert (paths.figures / "accuracy_per_rater.png").stat().st_size > 5000
    assert (paths.figures / "realism_scores.png").stat().st_size > 5000
    assert paths.responses_csv.read_text().count("\n") == 41


def test_human_answers_take_precedence_over_simulated(built_study):
    from reader_study import store

    cfg, run, paths = built_study
    simulate(paths, 2, "perfect", seed=1)
    with store.connect(paths.db) as conn:
        human = store.raters(conn)[0]
        assert not human.simulated
        for step in range(3):
            store.submit(conn, human, step, 0, [2, 2, 2, 2], 4, 4)
    res = run_analysis(paths, n_boot=50, seed=0, alpha=0.05)
    assert res["n_raters"] == 1 and res["n_answers"] == 3 and res["simulated"] is False


def test_analyze_with_no_answers_writes_nothing(built_study):
    cfg, run, paths = built_study
    assert run_analysis(paths, n_boot=50, seed=0, alpha=0.05) is None
    assert not paths.results.exists()


def test_cli_build_simulate_analyze(study_run, capsys):
    """The stage works from its CLI alone, the way `cspine release` calls it."""
    from cspine.cli import main
    from tests.reader_study.conftest import REPO

    common = ["--config", str(REPO / "configs" / "demo.yaml"), "--run-dir", str(study_run.root),
              "--set", "study.trials=8", "--set", "study.image_size=64", "--set", "study.bootstrap=100"]
    assert main(["study", "analyze", *common]) == 2  # not built yet: a one-line error, not a traceback
    assert "run `cspine study build` first" in capsys.readouterr().err
    assert main(["study", "build", *common]) == 0
    rec = json.loads((study_run.study / "record.json").read_text())  # its provenance, as every stage keeps
    assert rec["complete"] and rec["outputs"]["assets"] and rec["inputs"]["samples"]["images"]
    assert rec["config"]["study"]["trials"] == 8
    assert main(["study", "build", *common]) == 0  # skips
    assert main(["study", "analyze", *common]) == 0  # nobody answered yet: says so, writes nothing
    assert not (study_run.study / "results.json").exists()
    assert main(["study", "simulate", *common, "--raters", "3", "--policy", "0.5"]) == 0
    assert main(["study", "analyze", *common]) == 0
    res = json.loads((study_run.study / "results.json").read_text())
    assert res["n_answers"] == 24 and res["simulated"] and res["mrmc_bootstrap"]["resamples_requested"] == 100
    assert main(["study", "add-rater", *common, "--name", "Dr A"]) == 0
    assert "Dr A" in (study_run.study / "access_codes.csv").read_text()


@pytest.mark.parametrize("policy", ["chance", "perfect"])
def test_pairs_on_a_five_point_scale(policy):
    """The other groups' design: pairs (k = 2), 5-point scale."""
    res = analyze(*paper_sized(policy, raters=6, trials=40, k=2, likert=5), n_boot=200)
    acc = res["accuracy"]["pooled"]
    assert acc["chance"] == 0.5 and acc["n"] == 240
    if policy == "perfect":
        assert acc["accuracy"] == 1.0 and res["realism"]["real"]["mean"] == 5
        assert all(res["paired_tests"]["by_response"][g]["ttest_p_holm"] < 1e-6 for g in GROUPS)
    else:
        assert acc["ci_low"] < 0.5 < acc["ci_high"]
        assert set(res["realism"]["real"]["counts"]) == {"1", "2", "3", "4", "5"}
