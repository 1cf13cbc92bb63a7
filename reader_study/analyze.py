"""`cspine study analyze`: answers + answer key -> study/results.json, summary.md, figures/, responses.csv.

Reads study/study.json, study/answer_key.json and study/responses.sqlite (reader_study.store) and runs the
statistics of reader_study.stats: identification accuracy per rater and pooled, agreement, realism scores per
group (real and each synthetic checkpoint) with paired tests and Holm correction, and the MRMC bootstrap.
Answers of simulated raters (`cspine study simulate`) are analysed only when no real rater has answered, and
the results then say ``"simulated": true`` in every output. summary.md ends with the blinding check of the
build (study/blinding.json, reader_study.blinding), so the card says whether a shortcut could have picked the real image.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict

import numpy as np

from cspine import atomic
from reader_study import stats, store
from reader_study.blinding import BLINDING_JSON
from reader_study.blinding import summary_md as blinding_md
from reader_study.build import StudyPaths, load_study
from reader_study.design import REAL
from reader_study.server import responses_csv

log = logging.getLogger("cspine.study")


def tidy(study: dict, key: dict, rows: list[dict]) -> list[dict]:
    """One record per answer: rater, trial, correct, the chosen group, and the scores keyed by group."""
    if key.get("study_id") != study.get("study_id"):
        raise ValueError(f"answer_key.json belongs to study {key.get('study_id')}, study.json to {study.get('study_id')}")
    info = {t["trial"]: t for t in key["trials"]}
    out = []
    for r in rows:
        t = info.get(r["trial"])
        if t is None:
            raise ValueError(f"responses.sqlite: trial {r['trial']} (rater {r['rater_id']}) is not in answer_key.json")
        by_group: dict[str, list[int]] = defaultdict(list)
        for alt, s in zip(t["alternatives"], r["scores"]):
            by_group[alt["group"]].append(s)
        out.append(dict(
            rater=r["rater_id"], trial=r["trial"], choice=r["choice"], correct=int(r["choice"] == t["real_position"]),
            chosen_group=t["alternatives"][r["choice"]]["group"], scores=dict(by_group), simulated=r["simulated"],
        ))
    return out


def analyze(study: dict, key: dict, rows: list[dict], n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """All statistics of one study as a JSON-ready dict (pure: no files)."""
    k, n_trials = study["alternatives"], study["n_trials"]
    recs = tidy(study, key, rows)
    groups = key["groups"]
    synth = [g for g in groups if g != REAL]
    raters = sorted({r["rater"] for r in recs})
    res: dict = {
        "study_id": study["study_id"], "alternatives": k, "likert_points": study["likert_points"], "n_trials": n_trials,
        "n_raters": len(raters), "n_answers": len(recs), "groups": groups, "alpha": alpha,
        "simulated": bool(recs) and all(r["simulated"] for r in recs),
    }
    if not recs:
        return res | {"note": "no answers yet"}
    res["accuracy"] = _accuracy(recs, raters, groups, k, alpha)
    res["agreement"] = _agreement(recs, raters, n_trials, k)
    res["realism"] = _realism(recs, groups, study["likert_points"])
    res["paired_tests"] = _paired_tests(recs, raters, synth, alpha)
    res["mrmc_bootstrap"] = _mrmc_bootstrap(recs, raters, synth, n_boot, seed, alpha)
    return res


def _accuracy(recs: list[dict], raters: list[str], groups: list[str], k: int, alpha: float) -> dict:
    """Identification accuracy per rater and pooled, homogeneity across raters, position bias."""
    per_rater = {}
    for rid in raters:
        mine = [r for r in recs if r["rater"] == rid]
        per_rater[rid] = stats.accuracy_test(sum(r["correct"] for r in mine), len(mine), k, alpha)
    pooled = stats.accuracy_test(sum(r["correct"] for r in recs), len(recs), k, alpha)
    return {
        "pooled": pooled,
        "per_rater": per_rater,
        "homogeneity_across_raters": stats.chi2_homogeneity([v["correct"] for v in per_rater.values()], [v["n"] for v in per_rater.values()]),
        "position_bias": stats.position_bias([r["choice"] for r in recs], k),
        "chosen_group_counts": {g: sum(r["chosen_group"] == g for r in recs) for g in groups},
    }


def _agreement(recs: list[dict], raters: list[str], n_trials: int, k: int) -> dict:
    """Agreement among the raters who answered every trial (the same subjects for all)."""
    complete = [rid for rid in raters if sum(r["rater"] == rid for r in recs) == n_trials]
    choice_of = {(r["rater"], r["trial"]): r for r in recs}
    trials = sorted({r["trial"] for r in recs})
    return {
        "on_choice": stats.agreement({rid: [choice_of[(rid, t)]["choice"] for t in trials] for rid in complete}, k),
        "on_correct": stats.agreement({rid: [choice_of[(rid, t)]["correct"] for t in trials] for rid in complete}, 2),
        "raters_included": complete,
    }


def _realism(recs: list[dict], groups: list[str], likert_points: int) -> dict:
    """Realism scores per group: summary statistics and the count of each scale level."""
    scores = {g: [s for r in recs for s in r["scores"].get(g, [])] for g in groups}
    levels = range(1, likert_points + 1)
    return {g: stats.describe(v) | {"counts": {str(lv): int(sum(s == lv for s in v)) for lv in levels}} for g, v in scores.items()}


def _paired_tests(recs: list[dict], raters: list[str], synth: list[str], alpha: float) -> dict:
    """Real vs each synthetic group, paired by response and by rater, Holm-corrected across groups."""

    def pairs_by_response(g):
        ps = [(np.mean(r["scores"][REAL]), np.mean(r["scores"][g])) for r in recs if g in r["scores"]]
        return [p[0] for p in ps], [p[1] for p in ps]

    def pairs_by_rater(g):
        x, y = [], []
        for rid in raters:
            mine = [r for r in recs if r["rater"] == rid and g in r["scores"]]
            if mine:
                x.append(np.mean([s for r in mine for s in r["scores"][REAL]]))
                y.append(np.mean([s for r in mine for s in r["scores"][g]]))
        return x, y

    tests = {}
    for level, pairer in (("by_response", pairs_by_response), ("by_rater", pairs_by_rater)):
        per_group = {g: stats.paired_tests(*pairer(g)) for g in synth}
        for test in ("wilcoxon", "ttest"):
            adj = stats.holm([per_group[g].get(f"{test}_p") for g in synth], alpha)
            for g, p in zip(synth, adj):
                per_group[g][f"{test}_p_holm"] = p
        tests[level] = per_group
    return tests | {
        "note": "real vs each synthetic group; by_response pairs the real image's score with the group's score in the "
                "same (rater, trial), as in the paper; by_rater pairs each rater's mean scores. Holm across groups per test and level.",
    }


def _mrmc_bootstrap(recs: list[dict], raters: list[str], synth: list[str], n_boot: int, seed: int, alpha: float) -> dict:
    """The multi-reader multi-case bootstrap over raters x trials matrices of accuracy and realism."""
    trials = sorted({r["trial"] for r in recs})
    ri = {rid: i for i, rid in enumerate(raters)}
    ti = {t: j for j, t in enumerate(trials)}
    mats = {"accuracy": np.full((len(raters), len(trials)), np.nan), "realism_real": np.full((len(raters), len(trials)), np.nan)}
    for g in synth:
        mats[f"realism_{g}"] = np.full((len(raters), len(trials)), np.nan)
        mats[f"realism_difference_real_minus_{g}"] = np.full((len(raters), len(trials)), np.nan)
    for r in recs:
        i, j = ri[r["rater"]], ti[r["trial"]]
        mats["accuracy"][i, j] = r["correct"]
        mats["realism_real"][i, j] = np.mean(r["scores"][REAL])
        for g in synth:
            if g in r["scores"]:
                mats[f"realism_{g}"][i, j] = np.mean(r["scores"][g])
                mats[f"realism_difference_real_minus_{g}"][i, j] = np.mean(r["scores"][REAL]) - np.mean(r["scores"][g])
    return stats.mrmc_bootstrap(mats, n_boot, seed, alpha) | {"resamples_requested": n_boot}


def plot(results: dict, figures) -> list[str]:
    """accuracy_per_rater.png and realism_scores.png; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    acc = results["accuracy"]
    names = list(acc["per_rater"]) + ["pooled"]
    vals = [acc["per_rater"][r] for r in acc["per_rater"]] + [acc["pooled"]]
    y = np.array([v["accuracy"] for v in vals])
    lo = y - np.array([v["ci_low"] for v in vals])
    hi = np.array([v["ci_high"] for v in vals]) - y
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.6), dpi=120)
    colors = ["#4e79a7"] * (len(names) - 1) + ["#e15759"]
    ax.bar(range(len(names)), y, color=colors, alpha=0.85)
    ax.errorbar(range(len(names)), y, yerr=[lo, hi], fmt="none", ecolor="k", capsize=4, lw=1)
    ax.axhline(1 / results["alternatives"], ls="--", color="gray", label=f"chance 1/{results['alternatives']}")
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 10 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("real image identified")
    mrmc = results["mrmc_bootstrap"].get("accuracy", {})
    title = "Identification accuracy (95% Clopper-Pearson)"
    if mrmc.get("ci_low") is not None:
        title += f"; MRMC {mrmc['ci_low']:.2f}-{mrmc['ci_high']:.2f}"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(figures / "accuracy_per_rater.png")
    plt.close(fig)

    groups = results["groups"]
    L = results["likert_points"]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) + 2), 3.6), dpi=120)
    cmap = plt.get_cmap("RdYlGn", L)
    bottom = np.zeros(len(groups))
    for lv in range(1, L + 1):
        share = np.array([
            results["realism"][g]["counts"][str(lv)] / max(1, results["realism"][g]["n"]) for g in groups
        ])
        ax.bar(range(len(groups)), share, bottom=bottom, color=cmap(lv - 1), label=str(lv), edgecolor="white", lw=0.5)
        bottom += share
    for i, g in enumerate(groups):
        m = results["realism"][g].get("mean")
        if m is not None:
            ax.text(i, 1.02, f"mean {m:.2f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of ratings")
    ax.set_title(f"Realism ratings per group (1 = clearly synthetic, {L} = clearly real)", fontsize=9)
    ax.legend(title="score", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(figures / "realism_scores.png")
    plt.close(fig)
    return ["accuracy_per_rater.png", "realism_scores.png"]


def _p(p) -> str:
    return "n/a" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _peq(p) -> str:
    return "p n/a" if p is None else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def summary_md(res: dict) -> str:
    """The Markdown snippet the dataset card includes (no top-level header; figures as figures/NAME.png)."""
    k, acc = res["alternatives"], res["accuracy"]["pooled"]
    mrmc = res["mrmc_bootstrap"]
    lines = ["Blinded visual Turing test (`cspine study`).", ""]
    if res["simulated"]:
        lines += ["> **Simulated raters**: these numbers come from `cspine study simulate`, not from human experts. "
                  "They show the analysis works; they say nothing about the images.", ""]
    lines += [
        f"{res['n_raters']} raters each saw up to {res['n_trials']} trials of {k} images (one real held-out radiograph, "
        f"{k - 1} synthetic), picked the image they thought real and rated every image's realism on a "
        f"{res['likert_points']}-point scale (1 = clearly synthetic). {res['n_answers']} answers.",
        "",
        f"- **Identification accuracy**: {acc['accuracy']:.1%} ({acc['correct']}/{acc['n']}) against chance {1 / k:.1%}; "
        f"exact binomial {_peq(acc['p_binomial_two_sided'])}, 95% Clopper-Pearson {acc['ci_low']:.1%}-{acc['ci_high']:.1%}"
        + (f"; MRMC bootstrap over raters and cases {mrmc['accuracy']['ci_low']:.1%}-{mrmc['accuracy']['ci_high']:.1%}"
           if mrmc.get("accuracy", {}).get("ci_low") is not None else "") + ".",
    ]
    picked = res["accuracy"]["chosen_group_counts"]
    total = max(1, sum(picked.values()))
    lines.append("- **Picked as real**: " + ", ".join(f"{g} {n / total:.1%}" for g, n in picked.items())
                 + f" (if the images were indistinguishable, each image of a trial would be picked {1 / k:.1%} of the time).")
    fk = res["agreement"]["on_choice"]["fleiss_kappa"]
    lines.append(f"- **Agreement** on the image picked: Fleiss' kappa = {fk:.3f}" if fk is not None
                 else "- **Agreement**: Fleiss' kappa not available (needs two raters who answered every trial).")
    lines += ["", "| group | n ratings | mean realism (SD) | median | Wilcoxon p (Holm) | paired t p (Holm) |", "| --- | --- | --- | --- | --- | --- |"]
    tests = res["paired_tests"]["by_response"]
    for g in res["groups"]:
        d = res["realism"][g]
        sd = f" ({d['sd']:.2f})" if d.get("sd") is not None else ""
        mean = f"{d['mean']:.2f}{sd}" if d.get("mean") is not None else "n/a"
        t = tests.get(g, {})
        w = f"{_p(t.get('wilcoxon_p'))} ({_p(t.get('wilcoxon_p_holm'))})" if g != REAL else "reference"
        tt = f"{_p(t.get('ttest_p'))} ({_p(t.get('ttest_p_holm'))})" if g != REAL else "reference"
        lines.append(f"| {g} | {d['n']} | {mean} | {d.get('median', 'n/a')} | {w} | {tt} |")
    lines += [
        "",
        "Paired tests compare the real image's score with each synthetic group's score within the same answer "
        "(Holm correction across groups). An accuracy near chance and similar realism scores mean the experts could "
        "not tell the synthetic radiographs from real ones.",
        "",
        "![Identification accuracy per rater](figures/accuracy_per_rater.png)",
        "![Realism scores per group](figures/realism_scores.png)",
        "",
    ]
    return "\n".join(lines)


def run_analysis(paths: StudyPaths, n_boot: int, seed: int, alpha: float, include_simulated: bool = False) -> dict | None:
    """Analyse study/ and write its outputs; returns the results (None when nobody has answered yet)."""
    study = load_study(paths)
    if not paths.answer_key.exists():
        raise FileNotFoundError(f"{paths.answer_key} is missing: the answers cannot be scored without it")
    key = json.loads(paths.answer_key.read_text())
    with store.connect(paths.db) as conn:
        rows = store.responses(conn)
    humans = [r for r in rows if not r["simulated"]]
    if humans and not include_simulated:
        rows = humans
    if not rows:
        log.warning("no answers in %s yet: nothing to analyse", paths.db)
        return None
    res = analyze(study, key, rows, n_boot=n_boot, seed=seed, alpha=alpha)
    res["figures"] = plot(res, paths.figures)
    atomic.write_text(paths.responses_csv, responses_csv(rows, study["alternatives"]))
    atomic.write_json(paths.results, res)
    text = summary_md(res)
    blind = paths.root / BLINDING_JSON
    if blind.is_file():
        text += "\n" + blinding_md(json.loads(blind.read_text()))
    atomic.write_text(paths.summary, text)
    return res
