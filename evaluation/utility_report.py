"""Figures, plain-language statements and the summary.md section of the utility evaluation (eval/utility.json).

Where it sits: evaluation/, called by evaluation.utility (figures, statements) and evaluation.report
(the "Downstream utility and coverage" section of eval/summary.md). Reads only the dict utility.json holds
(and, for the team-only figure, the angle pairs the caller passes); writes PNGs.

Figures (eval/figures/):
- utility_coverage.png: shares per group (curvature class, sex, age band) in the real and the synthetic set
  with precision / recall markers. Counts and scores only: may ship.
- utility_tstr.png: TSTR against TRTR scores and the augmentation curve. Scores only: may ship.
- utility_angles.png: C2-C7 angles of real training images against synthetic ones per class, and the
  Bland-Altman plot on real holdout images. Shows measurements of real radiographs: team only.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from evaluation.report import _plt, _save

PUBLIC_FIGURES = ("utility_coverage.png", "utility_tstr.png")
TEAM_FIGURES = ("utility_angles.png",)


def _n(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}g}"


def _ci(ci, nd=3) -> str:
    return "" if not ci or ci[0] is None else f" (95% CI {_n(ci[0], nd)} to {_n(ci[1], nd)})"


def _pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


# -- statements -----------------------------------------------------------------------------------------------

def statements(u: dict, uc) -> list[str]:
    """Plain sentences from the numbers: what the synthetic set is good for and where it should not stand in
    for real data (TSTR gaps, under-covered groups, low recall, differing measurements)."""
    out: list[str] = []
    gap = uc.tstr_gap_ratio
    c = u.get("tstr", {}).get("curvature", {})
    if "ratio" in c:
        r = c["ratio"]["balanced_accuracy"]
        line = (f"A curvature classifier trained on {c['n_train']} synthetic images reaches a balanced accuracy of "
                f"{_n(c['tstr']['balanced_accuracy']['mean'])}{_ci(c['tstr']['balanced_accuracy']['ci95'])} on real "
                f"held-out radiographs, against {_n(c['trtr']['balanced_accuracy']['mean'])}"
                f"{_ci(c['trtr']['balanced_accuracy']['ci95'])} when trained on as many real images "
                f"(ratio {_n(r['ratio'])}{_ci(r['ci95'])}; chance {_n(c['chance_balanced_accuracy'])}).")
        if r["ci95"][1] is not None and r["ci95"][1] < gap:
            line += (" The synthetic set should not replace real images for training a curvature classifier: the "
                     f"whole interval lies below {gap}.")
        elif r["ci95"][0] is not None and r["ci95"][0] <= 1 <= r["ci95"][1]:
            line += " At this sample size it cannot be told from real training data on this task."
        out.append(line)
    lm = u.get("tstr", {}).get("landmarks", {})
    if "ratio" in lm:
        r = lm["ratio"]["mre_share"]
        line = (f"A landmark detector trained on {lm['n_train']} synthetic images finds the 23 landmarks of real "
                f"radiographs with a mean radial error of {_n(lm['tstr']['mre_share']['mean'])} vertebral heights"
                f"{_ci(lm['tstr']['mre_share']['ci95'])}, against {_n(lm['trtr']['mre_share']['mean'])}"
                f"{_ci(lm['trtr']['mre_share']['ci95'])} when trained on real images (ratio {_n(r['ratio'])}"
                f"{_ci(r['ci95'])}); its C2-C7 angle is off by {_n(lm['tstr']['angle_abs_error_deg']['mean'])} degrees "
                f"on average against {_n(lm['trtr']['angle_abs_error_deg']['mean'])}.")
        if r["ci95"][0] is not None and r["ci95"][0] > 1 / gap:
            line += (" The synthetic set should not replace real images for training a landmark detector: its error "
                     f"is higher by more than {_pct(1 / gap - 1)} with 95% confidence.")
        out.append(line)
    aug = u.get("augmentation", {})
    if aug.get("points") and len(aug["points"]) > 1:
        p = aug["points"][-1]
        d, dm = p["balanced_accuracy_change_vs_0x"], p["mre_share_change_vs_0x"]
        out.append(f"Adding {p['n_synthetic']} synthetic images to {p['n_real']} real ones changes the classifier's "
                   f"balanced accuracy by {d['difference']:+.3f}{_ci(d['ci95'])} and the detector's error by "
                   f"{dm['difference']:+.3f} vertebral heights{_ci(dm['ci95'])}.")
    meas = u.get("measurement", {})
    dist = meas.get("distributions", {}).get("by_class", {})
    names = u.get("classes", {})
    for k, row in dist.items():
        if row.get("differs"):
            out.append(f"The C2-C7 angles of synthetic {names.get(k, k)} images differ from the real ones (mean "
                       f"{_n(row['synthetic']['mean'])} vs {_n(row['real']['mean'])} degrees, difference "
                       f"{_n(row['mean_difference'])}{_ci(row['mean_difference_ci95'])}, KS test p = "
                       f"{_n(row['p_holm'], 2)} after Holm correction): measurements of this class should not be "
                       "taken from the synthetic set.")
    ba = meas.get("bland_altman", {})
    if ba.get("synthetic_trained", {}).get("bias") is not None and ba.get("real_trained", {}).get("bias") is not None:
        s, r = ba["synthetic_trained"], ba["real_trained"]
        out.append(f"On real radiographs the C2-C7 angle measured by the synthetic-trained detector has a bias of "
                   f"{s['bias']:+.2f} degrees{_ci(s['bias_ci'])} and limits of agreement {_n(s['loa'][0])} to "
                   f"{_n(s['loa'][1])}; the real-trained detector's are {r['bias']:+.2f}{_ci(r['bias_ci'])} and "
                   f"{_n(r['loa'][0])} to {_n(r['loa'][1])} (n = {s['n']}).")
    out += _coverage_statements(u.get("coverage", {}), names, uc)
    return out


def _coverage_statements(cov: dict, names: dict, uc) -> list[str]:
    out = []
    groupings = [("curvature", "train", "synthetic", lambda g: f"{names.get(g, g)} (class {g})")]
    for key in ("sex", "age_band"):
        g = cov.get(key, {})
        if "shares" not in g:
            continue
        if g.get("classifier", {}).get("informative"):
            groupings.append((key, "holdout_predicted", "synthetic_predicted", lambda x, key=key: f"{key.replace('_', ' ')} {x}"))
        else:
            cl = g.get("classifier", {})
            out.append(f"The {key.replace('_', ' ')} of a synthetic image cannot be told reliably: a classifier trained on "
                       f"real images calls it on real held-out images with a balanced accuracy of "
                       f"{_n(cl.get('holdout_balanced_accuracy'))}{_ci(cl.get('ci95'))} (chance {_n(cl.get('chance'))}), "
                       f"so the synthetic set's {key.replace('_', ' ')} mix is unknown and not judged here.")
    for key, real_key, syn_key, label in groupings:
        g = cov.get(key, {})
        sh = g.get("shares", {})
        for grp, r in (sh.get(real_key) or {}).items():
            s = sh[syn_key][grp]
            if r["n"] and r["share"] > 0 and s["share"] < uc.under_covered_ratio * r["share"]:
                out.append(f"{label(grp).capitalize()} is under-covered: {_pct(s['share'])} of the synthetic images "
                           f"(95% CI {_pct(s['ci95'][0])}-{_pct(s['ci95'][1])}) against {_pct(r['share'])} of the real "
                           f"ones{' (as the classifier calls them)' if 'predicted' in real_key else ''}.")
        for grp, pr in (g.get("precision_recall") or {}).items():
            sv, hv = pr.get("synthetic_vs_train", {}), pr.get("holdout_vs_train", {})
            if "recall" not in sv:
                continue
            floor = hv.get("recall")
            bar = uc.low_recall * floor if floor is not None else uc.low_recall
            if sv["recall"] < bar:
                ref = (f"real held-out images of the group reach {_n(floor)}" if floor is not None
                       else "no real yardstick")
                out.append(f"{label(grp).capitalize()}: the synthetic images cover only {_n(sv['recall'])}"
                           f"{_ci(sv['recall_ci95'])} of the real images' variety (recall in Inception space; {ref}): "
                           "the synthetic set should not stand in for real data of this group.")
    return out


# -- figures --------------------------------------------------------------------------------------------------

def plot_all(u: dict, train, synth, pairs: dict | None, figures: Path) -> dict:
    """Draw the figures that the numbers allow; returns {"public": [...], "team_only": [...]} (paths under eval/)."""
    made = {"public": [], "team_only": []}
    if u.get("coverage"):
        plot_coverage(u["coverage"], u.get("classes", {}), figures / "utility_coverage.png")
        made["public"].append("figures/utility_coverage.png")
    if any("ratio" in (u.get("tstr", {}).get(k) or {}) for k in ("curvature", "landmarks")):
        plot_tstr(u, figures / "utility_tstr.png")
        made["public"].append("figures/utility_tstr.png")
    if u.get("measurement"):
        plot_angles(u, pairs, figures / "utility_angles.png")
        made["team_only"].append("figures/utility_angles.png")
    return made


def _err(entry_list):
    lo = [max(0.0, e["share"] - e["ci95"][0]) if e["ci95"][0] is not None else 0 for e in entry_list]
    hi = [max(0.0, e["ci95"][1] - e["share"]) if e["ci95"][1] is not None else 0 for e in entry_list]
    return [lo, hi]


def plot_coverage(cov: dict, names: dict, path: Path) -> None:
    """Per grouping a panel: paired bars of real and synthetic shares (Wilson intervals) and, on the right
    axis, the synthetic images' precision (triangle) and recall (dot) per group, with the real-vs-real
    recall (open circle) as yardstick."""
    plt = _plt()
    panels = [("curvature", "curvature class", "train", "synthetic", "real training (annotated)", "synthetic (requested)")]
    for key, title in (("sex", "sex"), ("age_band", "age band")):
        if "shares" in cov.get(key, {}):
            panels.append((key, title + " (synthetic: predicted)", "holdout_predicted", "synthetic_predicted",
                           "real held-out (predicted)", "synthetic (predicted)"))
    widths = [max(2.5, 0.9 * len(cov[p[0]]["shares"][p[2]])) for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths) + 1.5, 3.8), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (key, title, rk, sk, rl, sl) in zip(axes[0], panels):
        g = cov[key]
        groups = list(g["shares"][rk])
        real, syn = [g["shares"][rk][x] for x in groups], [g["shares"][sk][x] for x in groups]
        x = np.arange(len(groups))
        ax.bar(x - 0.2, [e["share"] for e in real], 0.4, yerr=_err(real), capsize=2, color="0.6", label=rl)
        ax.bar(x + 0.2, [e["share"] for e in syn], 0.4, yerr=_err(syn), capsize=2, color="C0", label=sl)
        for xi, e in zip(x, syn):
            ax.text(xi + 0.2, 0.005, str(e["n"]), ha="center", va="bottom", fontsize=6, color="white")
        labels = [names.get(x_, x_) if key == "curvature" else x_ for x_ in groups]
        ax.set_xticks(x, labels, rotation=30 if key == "curvature" else 0, ha="right" if key == "curvature" else "center",
                      fontsize=7)
        ax.set_ylabel("share of images", fontsize=8)
        top = max([e["ci95"][1] or e["share"] for e in real + syn] + [0.1])
        ax.set_ylim(0, 2.1 * top)  # bars in the lower half, precision / recall markers in the upper one
        ax.set_yticks([t for t in (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0) if t <= 1.05 * top])
        cl = g.get("classifier")
        if cl is not None and not cl.get("informative"):
            title += f"\nclassifier at chance ({cl.get('holdout_balanced_accuracy') or float('nan'):.2f}): not judged"
        elif cl is not None:
            title += f"\nclassifier balanced accuracy {cl['holdout_balanced_accuracy']:.2f} on real held-out"
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=6, loc="center right", framealpha=0.9)
        pr = g.get("precision_recall") or {}
        tw = ax.twinx()
        tw.set_ylim(-1.2, 1.08)
        tw.set_yticks([0, 0.5, 1.0])
        tw.axhline(0, color="0.85", lw=0.6)
        for xi, grp in zip(x, groups):
            sv, hv = (pr.get(grp) or {}).get("synthetic_vs_train", {}), (pr.get(grp) or {}).get("holdout_vs_train", {})
            if "precision" in sv:
                tw.plot([xi + 0.2], [sv["precision"]], "^", color="C3", ms=6)
                tw.plot([xi + 0.2], [sv["recall"]], "o", color="C2", ms=6)
            if "recall" in hv:
                tw.plot([xi - 0.2], [hv["recall"]], "o", mfc="none", color="C2", ms=6)
        tw.set_ylabel("precision ▲ / recall ●", fontsize=7)
        tw.tick_params(labelsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle("Who the synthetic set represents: shares per group (bars, 95% CI) and how well "
                 "(▲ precision, ● recall of synthetic vs real training; ○ real held-out recall)", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _bars(ax, labels, tstr, trtr, ylabel):
    x = np.arange(len(labels))
    for off, arm, col, name in ((-0.2, trtr, "0.6", "TRTR (real)"), (0.2, tstr, "C0", "TSTR (synthetic)")):
        m = [a["mean"] for a in arm]
        err = [[max(0, a["mean"] - a["ci95"][0]) for a in arm], [max(0, a["ci95"][1] - a["mean"]) for a in arm]]
        ax.bar(x + off, m, 0.4, yerr=err, capsize=3, color=col, label=name)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)


def plot_tstr(u: dict, path: Path) -> None:
    """TSTR against TRTR (mean over seeds, 95% CI) for the classifier and the detector, and the augmentation curve."""
    plt = _plt()
    c, lm, aug = u["tstr"].get("curvature", {}), u["tstr"].get("landmarks", {}), u.get("augmentation", {})
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    if "ratio" in c:
        ks = ("balanced_accuracy", "macro_f1")
        _bars(axes[0], ["balanced acc.", "macro F1"], [c["tstr"][k] for k in ks], [c["trtr"][k] for k in ks],
              "score on real holdout")
        axes[0].axhline(c["chance_balanced_accuracy"], color="k", lw=0.8, ls=":")
        axes[0].set_ylim(0, 1)
        axes[0].set_title(f"curvature classifier (n={c['n_train']} each)\nratio {c['ratio']['balanced_accuracy']['ratio']:.2f}",
                          fontsize=8)
    if "ratio" in lm:
        _bars(axes[1], ["MRE"], [lm["tstr"]["mre_share"]], [lm["trtr"]["mre_share"]], "share of vertebral height")
        axes[1].set_title(f"landmark error (n={lm['n_train']} each)\nratio {lm['ratio']['mre_share']['ratio']:.2f} "
                          "(lower is better)", fontsize=8)
        _bars(axes[2], ["C2-C7 angle"], [lm["tstr"]["angle_abs_error_deg"]], [lm["trtr"]["angle_abs_error_deg"]],
              "absolute error (degrees)")
        axes[2].set_title("angle from predicted landmarks\n(lower is better)", fontsize=8)
    ax = axes[3]
    if aug.get("points"):
        pts = aug["points"]
        x = [p["multiplier"] for p in pts]
        ba = [p["balanced_accuracy"] for p in pts]
        ax.errorbar(x, [b["mean"] for b in ba], yerr=[[b["mean"] - b["ci95"][0] for b in ba], [b["ci95"][1] - b["mean"] for b in ba]],
                    marker="o", capsize=3, color="C0", label="balanced accuracy")
        ax.set_xlabel(f"synthetic images per real image ({aug['n_real']} real)", fontsize=8)
        ax.set_ylabel("balanced accuracy", color="C0", fontsize=8)
        tw = ax.twinx()
        mr = [p["mre_share"] for p in pts]
        tw.errorbar(x, [b["mean"] for b in mr], yerr=[[b["mean"] - b["ci95"][0] for b in mr], [b["ci95"][1] - b["mean"] for b in mr]],
                    marker="s", capsize=3, color="C1", label="MRE")
        tw.set_ylabel("MRE (vertebral heights)", color="C1", fontsize=8)
        ax.set_xticks(x, [f"{m:g}x\n+{p['n_synthetic']}" for m, p in zip(x, pts)], fontsize=7)
        ax.set_title("augmentation curve (real holdout)", fontsize=8)
        tw.tick_params(labelsize=7)
        ax.tick_params(labelsize=7)
    else:
        ax.axis("off")
    fig.suptitle("Train on synthetic, test on real (TSTR) against train on real (TRTR): mean over seeds, 95% CI "
                 "over seeds and holdout images", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_angles(u: dict, pairs: dict | None, path: Path) -> None:
    """Team only: C2-C7 angle per class (real training vs synthetic), and Bland-Altman on real holdout images."""
    plt = _plt()
    dist = u["measurement"]["distributions"]["by_class"]
    names = u.get("classes", {})
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ks = list(dist)
    x = np.arange(len(ks))
    for off, key, col in ((-0.18, "real", "0.5"), (0.18, "synthetic", "C0")):
        m = [dist[k][key]["mean"] for k in ks]
        ci = [dist[k][key]["mean_ci95"] for k in ks]
        sd = [dist[k][key]["sd"] for k in ks]
        a1.errorbar(x + off, m, yerr=sd, fmt="none", ecolor=col, alpha=0.4, lw=4)
        a1.errorbar(x + off, m, yerr=[[mi - c[0] if c[0] is not None else 0 for mi, c in zip(m, ci)],
                                      [c[1] - mi if c[1] is not None else 0 for mi, c in zip(m, ci)]],
                    fmt="o", color=col, capsize=3, label=f"{key} (mean, 95% CI; bar: sd)")
    a1.set_xticks(x, [names.get(k, k) + (f"\np={dist[k]['p_holm']:.2g}" if dist[k].get("p_holm") is not None else "")
                      for k in ks], fontsize=7)
    a1.set_ylabel("C2-C7 angle (degrees, lordosis +)", fontsize=8)
    a1.legend(fontsize=6)
    a1.set_title("angle per curvature class: real training vs synthetic (KS p, Holm-corrected)", fontsize=8)
    if pairs is not None:
        t = np.asarray(pairs["true"])
        for key, col, lab in (("trtr", "0.4", "real-trained"), ("tstr", "C0", "synthetic-trained")):
            p = np.asarray(pairs[key])
            a2.scatter((p + t) / 2, p - t, s=10, color=col, alpha=0.7, label=lab)
            ba = u["measurement"]["bland_altman"]["real_trained" if key == "trtr" else "synthetic_trained"]
            if ba.get("bias") is not None:
                a2.axhline(ba["bias"], color=col, lw=1)
                for lim in ba["loa"]:
                    a2.axhline(lim, color=col, lw=0.8, ls="--")
        a2.set_xlabel("mean of measured and annotated angle (degrees)", fontsize=8)
        a2.set_ylabel("measured - annotated (degrees)", fontsize=8)
        a2.legend(fontsize=6)
        a2.set_title("Bland-Altman on real holdout images (bias, 95% limits)", fontsize=8)
    else:
        a2.axis("off")
    fig.tight_layout()
    _save(fig, path)


# -- summary.md -----------------------------------------------------------------------------------------------

def utility_markdown(u: dict) -> list[str]:
    """Lines of the "Downstream utility and coverage" section of summary.md from utility.json's content."""
    lines = ["", "### Downstream utility and coverage", ""]
    if not u:
        return lines + ["Not measured (no eval/utility.json)."]
    if u.get("skipped"):
        return lines + [f"Not measured: {u['skipped']}."]
    c, lm = u["tstr"].get("curvature", {}), u["tstr"].get("landmarks", {})
    lines += ["Small networks trained on synthetic images only (TSTR) and on as many real training images (TRTR), "
              "tested on the real holdout; mean over seeds with 95% intervals over seeds and holdout images.", "",
              "| task | score | TSTR | TRTR | TSTR / TRTR |", "| --- | --- | --- | --- | --- |"]
    for block, keys, task in ((c, ("balanced_accuracy", "macro_f1"), "curvature"),
                              (lm, ("mre_px", "mre_share", "angle_abs_error_deg"), "landmarks")):
        if "ratio" not in block:
            lines.append(f"| {task} | skipped: {block.get('skipped', 'n/a')} | | | |")
            continue
        for k in keys:
            t, r, q = block["tstr"][k], block["trtr"][k], block["ratio"][k]
            lines.append(f"| {task} (n={block['n_train']}) | {k.replace('_', ' ')} | {_n(t['mean'])}{_ci(t['ci95'])} | "
                         f"{_n(r['mean'])}{_ci(r['ci95'])} | {_n(q['ratio'])}{_ci(q['ci95'])} |")
    aug = u.get("augmentation", {})
    if aug.get("points"):
        lines += ["", f"Augmentation curve ({aug['note']}):", "",
                  "| real + synthetic | balanced accuracy | MRE (vertebral heights) |", "| --- | --- | --- |"]
        for p in aug["points"]:
            lines.append(f"| {p['n_real']} + {p['n_synthetic']} | {_n(p['balanced_accuracy']['mean'])}"
                         f"{_ci(p['balanced_accuracy']['ci95'])} | {_n(p['mre_share']['mean'])}{_ci(p['mre_share']['ci95'])} |")
    elif aug.get("skipped"):
        lines += ["", f"Augmentation curve skipped: {aug['skipped']}."]
    if u.get("statements"):
        lines += ["", *[f"- {s}" for s in u["statements"]]]
    for f in (u.get("figures") or {}).get("public", []):
        lines += ["", f"![{Path(f).stem.replace('_', ' ')}]({f})"]
    t = u.get("timings", {})
    lines += ["", f"Counts: {u['counts']}; seeds {u['seeds']}; time {sum(v for v in t.values() if v):.0f} s."]
    return lines
