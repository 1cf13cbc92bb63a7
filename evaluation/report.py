"""Figures (eval/figures/*.png) and the Markdown snippet (eval/summary.md) of `cspine evaluate`.

The snippet is included by the dataset card: no top-level header, figures referenced as figures/NAME.png.
Only figures without real pixels may be referenced there (synthetic_examples.png, c2st_most_synthetic.png, the curves,
fidelity_class_N.png, fidelity_confusion.png):
examples.png puts real held-out radiographs beside synthetic ones for the team and stays in the run folder
(the release copies allow-listed figures only, release.package.PUBLIC_FIGURES).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cspine import atomic


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)


def plot_examples(real: np.ndarray, synthetic: np.ndarray, path: Path, n: int = 8) -> None:
    """Two rows: real holdout images and synthetic ones (float [0, 1])."""
    plt = _plt()
    n = min(n, len(real), len(synthetic))
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for row, (imgs, label) in enumerate(((real, "real (holdout)"), (synthetic, "synthetic"))):
        for i in range(n):
            ax = axes[row][i]
            ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[row][0].set_ylabel(label, fontsize=8)
    _save(fig, path)


def plot_synthetic(synthetic: np.ndarray, path: Path, n: int = 16) -> None:
    """A grid of synthetic images only (float [0, 1]): the examples figure a release may show."""
    plt = _plt()
    n = min(n, len(synthetic))
    cols = min(8, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            ax.imshow(synthetic[k], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.axis("on" if k < n else "off")
    fig.suptitle("synthetic images", fontsize=9)
    _save(fig, path)


def plot_most_synthetic(synthetic: np.ndarray, scores: np.ndarray, path: Path) -> None:
    """The synthetic images the two-sample classifier is surest about (float [0, 1]), with P(synthetic):
    synthetic images only, so the release may show it."""
    plt = _plt()
    n = len(synthetic)
    cols = min(8, max(n, 1))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            ax.imshow(synthetic[k], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"p={scores[k]:.2f}", fontsize=7)
        ax.set_xticks([]), ax.set_yticks([])
        ax.axis("on" if k < n else "off")
    fig.suptitle("synthetic images the two-sample classifier finds most synthetic", fontsize=9)
    _save(fig, path)


def plot_class_grid(images: np.ndarray, keypoints: np.ndarray, predicted: np.ndarray | None,
                    calls: list[str] | None, title: str, path: Path) -> None:
    """Synthetic images of one requested class (float [0, 1]): top row plain, bottom row a copy with the
    released keypoints (dots, one colour per vertebra: C2 then C3-C7 by 4) and the landmark detector's
    points (white crosses); each column titled with the curvature classifier's call. Synthetic pixels only."""
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(2, max(n, 1), figsize=(1.5 * max(n, 1), 3.5), squeeze=False)
    level = np.array([0, 0, 0] + [1 + i // 4 for i in range(20)])
    colors = plt.get_cmap("tab10")(level % 10)
    for i in range(max(n, 1)):
        for row in (0, 1):
            ax = axes[row][i]
            ax.set_xticks([]), ax.set_yticks([])
            if i >= n:
                ax.axis("off")
                continue
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if row == 1:
                kp = keypoints[i]
                ok = np.isfinite(kp).all(1)
                ax.scatter(kp[ok, 0], kp[ok, 1], s=6, c=colors[ok], linewidths=0)
                if predicted is not None:
                    ax.scatter(predicted[i][:, 0], predicted[i][:, 1], s=6, marker="x", c="white", linewidths=0.5)
                ax.set_xlim(-0.5, images[i].shape[1] - 0.5), ax.set_ylim(images[i].shape[0] - 0.5, -0.5)
        if calls is not None and i < n:
            axes[0][i].set_title(f"classifier:\n{calls[i]}", fontsize=6)
    axes[0][0].set_ylabel("synthetic", fontsize=7)
    axes[1][0].set_ylabel("released keypoints\n(x: detector)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def plot_confusions(curv: dict, names: list[str], path: Path) -> None:
    """Confusion matrices of the curvature classifier (counts, no pixels): real holdout (true vs predicted)
    and synthetic (requested vs predicted), each row normalised for the colour, counts written in."""
    plt = _plt()
    panels = [(k, lab) for k, lab in (("holdout", "real holdout: true class"), ("synthetic", "synthetic: requested class"))
              if k in curv]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels):
        cm = np.asarray(curv[key]["confusion"], float)
        frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for (r, c), v in np.ndenumerate(cm):
            if v:
                ax.text(c, r, f"{int(v)}", ha="center", va="center", fontsize=7,
                        color="white" if frac[r, c] > 0.6 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("predicted class", fontsize=8), ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(f"accuracy {curv[key]['accuracy']:.2f} (n={curv[key]['n']})", fontsize=8)
    fig.suptitle("Curvature classifier trained on real training images", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_checkpoint_curve(rows: list[dict], loss_csv: Path, path: Path) -> None:
    """KID (with std) and FID against training step, with the training loss on a second axis."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [r["step"] for r in rows]
    ax1.errorbar(steps, [r["kid"] for r in rows], yerr=[r["kid_std"] for r in rows], marker="o", capsize=3,
                 color="C0", label="KID")
    ax1.set_xlabel("training step"), ax1.set_ylabel("KID vs holdout (lower is better)")
    ax2.plot(steps, [r["fid"] for r in rows], marker="o", color="C1", label="FID")
    ax2.set_xlabel("training step"), ax2.set_ylabel("FID vs holdout (biased at small n)")
    for r in rows:
        ax1.annotate(r["checkpoint"], (r["step"], r["kid"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if loss_csv.is_file():
        import pandas as pd

        try:
            df = pd.read_csv(loss_csv)
            if {"step", "loss"} <= set(df.columns) and len(df):
                for ax in (ax1, ax2):
                    tw = ax.twinx()
                    smooth = df["loss"].rolling(max(1, len(df) // 50), min_periods=1).mean()
                    tw.plot(df["step"], smooth, color="0.6", lw=1, label="training loss")
                    tw.set_ylabel("training loss (smoothed)", color="0.4")
        except (ValueError, pd.errors.ParserError):
            pass
    n = rows[0]["n_images"] if rows else 0
    fig.suptitle(f"Checkpoint selection: {n} images per checkpoint, {rows[0]['scheduler']} {rows[0]['steps']} steps"
                 if rows else "Checkpoint selection", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_sampler_curve(rows: list[dict], rec: dict | None, path: Path) -> None:
    """KID and FID against images/s per sampler, step counts annotated."""
    plt = _plt()
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"ddpm": "C3", "ddim": "C0", "dpmsolver++": "C2", "dpmsolver++-karras": "C8", "dpmsolver++-sde": "C1",
              "dpmsolver++-sde-karras": "C5", "unipc": "C4", "unipc-karras": "C6"}
    for name in sorted({r["scheduler"] for r in rows}):
        pts = sorted((r for r in rows if r["scheduler"] == name), key=lambda r: r["images_per_s"])
        x = [r["images_per_s"] for r in pts]
        ax1.errorbar(x, [r["kid"] for r in pts], yerr=[r["kid_std"] for r in pts], marker="o", capsize=3,
                     color=colors.get(name), label=name)
        ax2.plot(x, [r["fid"] for r in pts], marker="o", color=colors.get(name), label=name)
        for r in pts:
            for ax, key in ((ax1, "kid"), (ax2, "fid")):
                ax.annotate(str(r["steps"]), (r["images_per_s"], r[key]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    if rec:
        ax1.axhspan(rec["reference"]["kid"] - rec["reference"]["kid_std"],
                    rec["reference"]["kid"] + rec["reference"]["kid_std"], color="C3", alpha=0.12,
                    label="reference KID +- std")
        ax1.scatter([rec["images_per_s"]], [rec["kid"]], s=160, facecolors="none", edgecolors="k",
                    label=f"recommended: {rec['scheduler']} {rec['steps']}")
    for ax, lab in ((ax1, "KID vs holdout"), (ax2, "FID vs holdout (biased at small n)")):
        ax.set_xscale("log"), ax.set_xlabel("images / s (this machine)"), ax.set_ylabel(lab)
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    n = rows[0]["n_images"] if rows else 0
    fig.suptitle(f"Sampler speed-quality ({n} images per setting; step counts annotated)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _f(x, nd=4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}g}"
    return str(x)


def _ci(ci) -> str:
    return f"{_f(ci[0], 3)}-{_f(ci[1], 3)}" if ci and None not in ci else "n/a"


def fidelity_markdown(fd: dict) -> list[str]:
    """Lines of the "Control and label fidelity" section from metrics.json's ``fidelity`` entry."""
    if not fd:
        return []
    lines = ["", "### Control and label fidelity", ""]
    if "skipped" in fd:
        return lines + [f"Not measured: {fd['skipped']}."]
    cnt, curv, lm = fd.get("counts", {}), fd.get("curvature", {}), fd.get("landmarks", {})
    names = fd.get("classes", {})
    lines.append(
        f"Conditional samples: {cnt.get('synthetic')} synthetic images, each requested with a curvature class and "
        f"released with 23 keypoints. Two small CNNs trained on the {cnt.get('train')} real training images only "
        f"(seed {fd.get('seed')}) score them beside {cnt.get('holdout')} real held-out images, which they have not "
        "seen either: a curvature classifier (requested vs predicted class) and a landmark detector (mean radial "
        "error, MRE, of its points against the released keypoints; for real images against their annotations). "
        "Ratios are synthetic / real with bootstrap 95% intervals; the accuracy ratio weighs the real classes "
        "as the synthetic request mix.")
    lines += ["", "| measure | real holdout | synthetic | ratio (95% CI) | target |", "| --- | --- | --- | --- | --- |"]
    t, met = fd.get("targets", {}), fd.get("meets_targets", {})

    def verdict(key):
        return {True: "met", False: "**not met**", None: "n/a"}[met.get(key)]

    if "synthetic" in curv:
        h, sy, r = curv.get("holdout", {}), curv["synthetic"], curv.get("ratio", {})
        lines.append(f"| curvature accuracy | {_f(h.get('accuracy'), 3)} (n={h.get('n', 0)}) | {_f(sy['accuracy'], 3)} "
                     f"(n={sy['n']}) | {_f(r.get('ratio'), 3)} ({_ci(r.get('ci95'))}) | >= {t.get('accuracy_ratio_min')}: "
                     f"{verdict('accuracy_ratio')} |")
    elif curv.get("skipped"):
        lines.append(f"| curvature accuracy | not measured: {curv['skipped']} | | | |")
    if "synthetic" in lm:
        h, sy, r = lm.get("holdout", {}), lm["synthetic"], lm.get("ratio", {})
        lines.append(f"| landmark MRE, px | {_f(h.get('mre_px'), 3)} | {_f(sy['mre_px'], 3)} | {_f(r.get('ratio_px'), 3)} | |")
        lines.append(f"| landmark MRE, share of vertebral height | {_f(h.get('mre_share_of_vertebral_height'), 3)} "
                     f"(n={h.get('n_images', 0)}) | {_f(sy['mre_share_of_vertebral_height'], 3)} (n={sy['n_images']}) | "
                     f"{_f(r.get('ratio'), 3)} ({_ci(r.get('ci95'))}) | <= {t.get('mre_ratio_max')}: {verdict('mre_ratio')} |")
    elif lm.get("skipped"):
        lines.append(f"| landmark MRE | not measured: {lm['skipped']} | | | |")
    pc = fd.get("per_class", {})
    recall = (curv.get("synthetic") or {}).get("recall") or []
    share = (lm.get("synthetic") or {}).get("mre_share_by_class") or {}
    rows = [k for k in pc if k.isdigit()]
    if rows:
        lines += ["", "Per requested class (FID on so few images is biased upwards; compare classes at similar n, "
                  "KID is unbiased):", "",
                  "| class | synthetic | classified as requested | MRE / vertebral height | real holdout | FID | KID (mean +- std) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for k in rows:
            v, vh = pc[k], pc[k].get("vs_holdout", {})
            rc = recall[int(k) - 1] if len(recall) >= int(k) else None
            lines.append(f"| {names.get(k, k)} | {v['n_synthetic']} | {_f(rc, 3)} | {_f(share.get(k), 3)} | "
                         f"{vh.get('n_real', 0)} | {_f(vh.get('fid'), 4)} | {_f(vh.get('kid'))} +- {_f(vh.get('kid_std'), 2)} |")
    figs = fd.get("figures") or []
    if figs:
        lines += [""] + [f"![{Path(f).stem.replace('_', ' ')}]({f})" for f in figs]
    return lines


def summary_markdown(m: dict, utility: dict | None = None) -> str:
    """The eval/summary.md snippet from metrics.json's content."""
    lines = []  # the card puts this under its own "## Quality metrics" heading
    sets = m.get("sets", {})
    lines.append(
        f"Synthetic images: {sets.get('synthetic', 0)}; real holdout: {sets.get('holdout', 0)}; "
        f"real training: {sets.get('train', 0)} (capped at {m.get('config', {}).get('max_images')}). "
        f"Features: the standard FID Inception-v3 (`{m.get('network')}`), gray images replicated to 3 channels "
        "and resized to 299 px; FID and KID by torchmetrics."
    )
    lines.append("")
    lines.append("| comparison | n real | n synth | FID | KID (mean +- std) | precision | recall |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for key, label in (("vs_holdout", "synthetic vs holdout"), ("vs_train", "synthetic vs training"),
                       ("real_floor", "holdout vs training (real floor)")):
        r = m.get(key)
        if not r:
            continue
        lines.append(
            f"| {label} | {r['n_real']} | {r['n_fake']} | {_f(r['fid'], 5)} | {_f(r['kid'])} +- {_f(r['kid_std'], 2)} "
            f"| {_f(r['precision'], 3)} | {_f(r['recall'], 3)} |"
        )
    note = (m.get("vs_holdout") or {}).get("note")
    if note:
        lines += ["", f"Note: {note}. The real floor row (two real sets of about the same sizes) shows the value "
                  "a perfect generator would get at these n."]
    lines.append("")
    frd = m.get("frd") or {}
    if frd.get("vs_holdout") is not None:
        lines.append(
            f"Fréchet Radiomics Distance (frd-score v1, pyradiomics texture/intensity features, log scale; lower is "
            f"closer): synthetic vs holdout {_f(frd['vs_holdout'])} on {frd['n_fake']} / {frd['n_real']} images; "
            f"real floor (holdout vs training) {_f(frd.get('real_floor'))}."
        )
    elif frd.get("skipped"):
        lines.append(f"FRD not computed: {frd['skipped']}.")
    div = m.get("diversity") or {}
    if div:
        parts = [f"{k} {_f(v['mean'], 3)}" for k, v in div.items()]
        scales = next(iter(div.values()))["scales"]
        lines += ["", f"Diversity, mean pairwise MS-SSIM (lower = more varied; synthetic well above real suggests "
                  f"mode collapse; {scales} scales at this resolution): " + ", ".join(parts) + "."]
    w = m.get("washed_out") or {}
    if w:
        held = "" if w.get("holdout") is None else f", real held-out images {w['holdout']:.0%}"
        lines += ["", f"Washed-out images ({w['rule']}, {w['contrast_line']:.3f}): synthetic {w['synthetic']:.0%}{held}."]
    c = m.get("c2st") or {}
    if "auc" in c:
        lines += ["", f"Classifier two-sample test (a small CNN trained to tell synthetic from {c['a']} images, "
                  f"{c['folds']}-fold cross-validation, {c['n_a']} real / {c['n_b']} synthetic at {c['size']} px): "
                  f"AUC {c['auc']:.3f}, DeLong 95% {c['ci95'][0]:.3f}-{c['ci95'][1]:.3f} (0.5 = no difference "
                  "found, 1 = fully separable). The synthetic images it is surest about:",
                  "", "![most synthetic](figures/c2st_most_synthetic.png)"]
    elif c.get("skipped"):
        lines += ["", f"Classifier two-sample test not run: {c['skipped']}."]
    lines.append("")
    lines.append("![synthetic examples](figures/synthetic_examples.png)")
    lines += fidelity_markdown(m.get("fidelity") or {})
    if utility is not None:
        from evaluation.utility_report import utility_markdown

        lines += utility_markdown(utility)
    ck = m.get("checkpoint_curve") or []
    if ck:
        lines += ["", "### Checkpoints", "", "| checkpoint | step | KID | FID |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['checkpoint']} | {r['step']} | {_f(r['kid'])} +- {_f(r['kid_std'], 2)} | {_f(r['fid'], 5)} |"
                  for r in ck]
        lines += ["", "![checkpoint curve](figures/checkpoint_curve.png)"]
    sc = m.get("sampler_curve") or {}
    if sc.get("points"):
        lines += ["", "### Sampler speed and quality", "",
                  "| sampler | steps | images/s | KID | FID |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['scheduler']} | {r['steps']} | {_f(r['images_per_s'], 3)} | {_f(r['kid'])} +- "
                  f"{_f(r['kid_std'], 2)} | {_f(r['fid'], 5)} |" for r in sc["points"]]
        rec = sc.get("recommended")
        if rec:
            lines += ["", f"Recommended default: **{rec['scheduler']} with {rec['steps']} steps** "
                      f"({_f(rec['speedup'], 3)}x the speed of {rec['reference']['scheduler']} "
                      f"{rec['reference']['steps']} steps; rule: {rec['rule']}). "
                      f"Timings are from {sc.get('device', 'this machine')}."]
        lines += ["", "![sampler speed-quality](figures/sampler_curve.png)"]
    return "\n".join(lines) + "\n"
