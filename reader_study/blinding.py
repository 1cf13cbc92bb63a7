"""The blinding check of `cspine study build`: before any rater sees a trial, can a shortcut pick the real image?

Part of the reader study, run by ``build.build_study`` on the exact files it is about to serve (decoded
from the encoded PNG bytes, with their byte sizes), before they are moved into study/assets/. It uses the
shared statistics of cspine.twosample:

- per statistic (border and corner intensity, black and saturated share, mean, contrast, skewness,
  entropy, high-frequency energy, file size) and direction, the rule "pick the image with the highest
  (lowest) value as the real one" in every trial: hit rate against chance 1/k, one-sided exact binomial
  p, Holm-adjusted over all rules tried; and the AUC of real against synthetic over all served images;
- the classifier two-sample test (a small CNN under k-fold cross-validation, AUC with a DeLong interval),
  reported but not gated: a generator that is simply not good enough is separable without any shortcut,
  and that is what the raters are there to judge.

A rule is a *tell* when its adjusted p is below ``study.blinding.alpha`` (0.01) and its hit rate exceeds
chance by more than ``study.blinding.margin`` (0.15, i.e. 40% with quartets). With a tell the build stops
(:class:`BlindingTells`, exit 1): the study would measure the tell, not the anatomy. ``--allow-tells`` (or
``study.blinding.allow_tells``) builds anyway and records that in study/blinding.json, which is written
either way (it holds statistics only, never which image is real, and the server never reads it), except
that a refused *re*build leaves an earlier built study, and its blinding.json, in place and writes its own table
to study/blinding-refused.json.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from cspine import atomic
from cspine.errors import GateClosed
from cspine.images import read_gray
from cspine.twosample import STATISTICS, c2st, extreme_rules, image_statistics, statistic_aucs

log = logging.getLogger("cspine.study")

BLINDING_JSON = "blinding.json"
#: Where a refused rebuild's table goes while an earlier, built study stays served (its blinding.json stays too,
#: so the analysis and the card keep describing the images the raters actually see).
REFUSED_JSON = "blinding-refused.json"


#: What each ``study.tone`` policy means for the table (recorded in blinding.json and the summary).
TONE_POLICIES = {
    "match": "every served image has exactly the same 8-bit histogram (reader_study.tone): the intensity statistics "
             "(mean, contrast, skewness, entropy, black and saturated share) are equal by construction and their "
             "rules score chance; tone is measured by `cspine evaluate` (FID, KID, classifier two-sample test)",
    "as_is": "each image is served with its own tone",
}


class BlindingTells(GateClosed):
    """A simple statistic of the served files picks the real image better than chance (exit code 1)."""


def measure(images: list[np.ndarray], sizes: list[int], is_real: np.ndarray, trials: list[list[int]],
            real_positions: list[int], cfg) -> dict:
    """The blinding table of served ``images`` (with file ``sizes``); ``trials`` index into them. ``cfg`` is
    the ``study.blinding`` section. Pure: returns the report, decides nothing."""
    values = image_statistics(images, sizes)
    rules = extreme_rules(values, trials, real_positions)
    margin = cfg.margin
    for r in rules:
        r["tell"] = bool(r["p_holm"] < cfg.alpha and r["hit_rate"] > r["chance"] + margin)
    report: dict = {
        "what": "how well simple statistics of the served files, and a small classifier, tell real from synthetic",
        "n_trials": len(trials), "n_real": int(is_real.sum()), "n_synthetic": int((~is_real).sum()),
        "criterion": {"alpha": cfg.alpha, "margin_over_chance": margin, "p": "one-sided exact binomial, Holm over all rules"},
        "statistics": STATISTICS,
        "rules": rules,
        "auc": statistic_aucs(values, is_real),
        "tells": [f"{r['statistic']} ({r['rule']}): {r['hits']:g}/{r['trials']} trials" for r in rules if r["tell"]],
    }
    cc = cfg.c2st
    real_imgs = [im for im, r in zip(images, is_real) if r]
    syn_imgs = [im for im, r in zip(images, is_real) if not r]
    if not cc.enabled:
        report["c2st"] = {"skipped": "disabled (study.blinding.c2st.enabled: false)"}
    elif min(len(real_imgs), len(syn_imgs)) < cc.folds:
        report["c2st"] = {"skipped": f"fewer than {cc.folds} images in a set"}
    else:
        rng = np.random.default_rng(cc.seed)
        pick = lambda xs: [xs[i] for i in np.sort(rng.permutation(len(xs))[: cc.max_images])]  # noqa: E731
        res = c2st(pick(real_imgs), pick(syn_imgs), size=cc.size, folds=cc.folds, epochs=cc.epochs, seed=cc.seed)
        report["c2st"] = {**res.to_json(), "a": "real", "b": "synthetic",
                          "reading": "AUC of P(synthetic) on images the network never trained on: 0.5 = no difference found"}
    return report


def check_served(cfg, study_dir: Path, asset_dir: Path, trials, names: dict) -> dict:
    """Measure the files in ``asset_dir`` (named ``names[(trial, position)]`` + ".png") for ``trials``, write
    study/blinding.json, and raise :class:`BlindingTells` when a rule is a tell and tells are not allowed."""
    bc = cfg.study.blinding
    path = study_dir / BLINDING_JSON
    if not bc.enabled:
        atomic.write_json(path, {"enabled": False})
        return {"enabled": False}
    order = sorted({names[(t.index, p)]: a.kind for t in trials for p, a in enumerate(t.alternatives)}.items())
    index = {name: i for i, (name, _) in enumerate(order)}
    images, sizes = [], []
    for name, _ in order:
        data = (asset_dir / f"{name}.png").read_bytes()
        images.append(read_gray(io.BytesIO(data)))
        sizes.append(len(data))
    is_real = np.array([kind == "real" for _, kind in order])
    trial_idx = [[index[names[(t.index, p)]] for p in range(len(t.alternatives))] for t in trials]
    report = measure(images, sizes, is_real, trial_idx, [t.real_position for t in trials], bc)
    report["allow_tells"] = bc.allow_tells
    report["tone"] = {"policy": cfg.study.tone, "what": TONE_POLICIES[cfg.study.tone]}
    refused = bool(report["tells"]) and not bc.allow_tells
    report["verdict"] = ("refused: " if refused else "built despite tells (allow_tells): " if report["tells"] else "no tell found") + \
        ("; ".join(report["tells"]) if report["tells"] else "")
    if refused and (study_dir / "study.json").exists():
        path = study_dir / REFUSED_JSON  # the built study stays, and with it the table of what it serves
    else:
        (study_dir / REFUSED_JSON).unlink(missing_ok=True)
    atomic.write_json(path, report)
    c = report.get("c2st", {})
    log.info("blinding: %s; classifier two-sample AUC %s", report["verdict"],
             f"{c['auc']:.3f} (95% {c['ci95'][0]:.3f}-{c['ci95'][1]:.3f})" if "auc" in c else c.get("skipped"))
    if refused:
        raise BlindingTells(
            f"the served images carry a tell: {'; '.join(report['tells'])} (chance {report['rules'][0]['chance']:.0%}; "
            f"table in {path}). Raters could pick the real image without looking at the anatomy. Remove the "
            "difference (e.g. re-run `cspine prepare`, which crops instead of padding, and retrain), or build anyway "
            "with --allow-tells (recorded in blinding.json)")
    return report


def summary_md(report: dict) -> str:
    """A Markdown section of the blinding check for study/summary.md (no top-level header)."""
    if not report or not report.get("rules"):
        return ""
    lines = ["**Blinding check** (`cspine study build`, on the served files before any rater saw them): "
             f"{report['verdict']}.", *([f"Tone: {report['tone']['what']}."] if report.get("tone") else []), "",
             "| statistic | best rule | hits / trials | p (Holm) | AUC real vs synthetic |", "| --- | --- | --- | --- | --- |"]
    best: dict[str, dict] = {}
    for r in report["rules"]:
        if r["statistic"] not in best or r["hit_rate"] > best[r["statistic"]]["hit_rate"]:
            best[r["statistic"]] = r
    for name, r in best.items():
        p = r["p_holm"]
        lines.append(f"| {name} | {r['rule']} | {r['hits']:g} / {r['trials']} (chance {r['chance'] * r['trials']:g}) | "
                     f"{'< 0.001' if p < 0.001 else f'{p:.3f}'} | {report['auc'][name]['auc_real_higher']:.2f} |")
    c = report.get("c2st", {})
    if "auc" in c:
        lines += ["", f"Classifier two-sample test (small CNN, {c['folds']}-fold cross-validation, {c['n_a']} real / "
                  f"{c['n_b']} synthetic served images): AUC {c['auc']:.2f} (DeLong 95% {c['ci95'][0]:.2f}-{c['ci95'][1]:.2f}); "
                  "0.5 means the classifier found no difference."]
    return "\n".join(lines + [""])
