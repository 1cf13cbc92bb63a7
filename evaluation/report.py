"""Figures (eval/figures/*.png) and the Markdown snippet (eval/summary.md) of `cspine evaluate`.

The snippet is included by the dataset card: no top-level header, figures referenced as figures/NAME.png.
Only figures without real pixels may be referenced there (synthetic_examples.png, c2st_most_synthetic.png, the curves):
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


def summary_markdown(m: dict) -> str:
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
