"""Writing audit/: audit.parquet, summary.json, summary.md, figures/*.png and report.html.

Where it sits: last step of `cspine audit`, after privacy/audit.py. Every file is written atomically;
summary.json is written last, so its presence means the audit finished (cspine/gate.py reads it).
report.html is self-contained (images and figures as PNG data URIs): the most similar synthetic/training
pairs side by side, sorted by closeness, with each method's score against its threshold.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from cspine import atomic
from cspine.images import png_bytes, to_unit
from cspine.rundir import RunDir
from privacy.audit import AuditResult, MethodResult
from privacy.inputs import AuditInputs


def fmt(m: MethodResult, d: float) -> str:
    """One distance of method ``m`` as text, on the method's own scale (``r=0.9912``, ``7 bits``)."""
    return m.scale.format(d)


def threshold_text(m: MethodResult) -> str:
    t = m.threshold
    if m.metric == "hamming" and t.calibrated <= 0 and t.floor is None:
        return "never here: real unseen images reach 0 bits"
    parts = [f"&lt; {fmt(m, t.calibrated)}" if m.metric == "hamming" else f"closer than {fmt(m, t.calibrated)}"]
    if t.floor is not None:
        parts.append(f"or within {fmt(m, t.floor)}")
    return " ".join(parts)


# -- figures ---------------------------------------------------------------------------------------
def plot_distances(result: AuditResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = result.methods
    fig, axes = plt.subplots(1, len(ms), figsize=(3.6 * len(ms), 3.0), squeeze=False)
    for ax, m in zip(axes[0], ms):
        syn, hold = m.dist.astype(float), m.holdout_dist.astype(float)
        lo, hi = min(syn.min(), hold.min()), max(syn.max(), hold.max())
        if m.metric == "hamming":
            bins = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5, 1.0)
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 40)
        ax.hist(hold, bins=bins, alpha=0.55, density=True, label="holdout → train (real)", color="#4c72b0")
        ax.hist(syn, bins=bins, alpha=0.55, density=True, label="synthetic → train", color="#dd8452")
        ax.axvline(m.threshold.calibrated, color="#c44e52", ls="--", lw=1.2, label="calibrated threshold")
        if m.threshold.floor is not None:
            ax.axvline(m.threshold.floor, color="k", ls=":", lw=1.2, label="absolute floor")
        ax.set_title(f"{m.name}: nearest-training distance", fontsize=9)
        ax.set_xlabel(f"{m.scale.label} (left = closer)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("density", fontsize=8)
    axes[0][0].legend(fontsize=6.5, loc="upper right")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_dcr(result: AuditResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m.name for m in result.methods]
    share = [result.summary["dcr"][n]["closer_to_train_share"] * 100 for n in names]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.4, 2.8))
    ax.bar(names, share, color="#55a868")
    ax.axhline(50, color="k", ls="--", lw=1, label="50% = no memorisation")
    ax.set_ylim(0, 100)
    ax.set_ylabel("% synthetic closer to\ntrain than holdout", fontsize=8)
    ax.set_title("DCR overfitting check (size-matched train subset)", fontsize=9)
    for i, s in enumerate(share):
        ax.text(i, s + 2, f"{s:.0f}%", ha="center", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


# -- report.html -----------------------------------------------------------------------------------
def png_uri(a: np.ndarray, size: int = 176) -> str:
    """An image (uint8/uint16) as an inline 8-bit PNG, upscaled (Lanczos) to ``size`` when smaller."""
    from PIL import Image

    im = Image.fromarray(np.rint(to_unit(a) * 255).astype(np.uint8), mode="L")
    if im.size[0] < size:
        im = im.resize((size, size), Image.Resampling.LANCZOS)
    return "data:image/png;base64," + base64.b64encode(png_bytes(np.asarray(im), optimize=True)).decode()


def file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def diff_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| after matching mean and spread, stretched for display (uint8)."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    x = (x - x.mean()) / (x.std() + 1e-9)
    y = (y - y.mean()) / (y.std() + 1e-9)
    d = np.abs(x - y)
    return np.rint(np.clip(d / 3.0, 0, 1) * 255).astype(np.uint8)


def ranked_pairs(result: AuditResult, n: int) -> pd.DataFrame:
    """The ``n`` synthetic images closest to training: flagged first, then by closeness."""
    t = result.table.copy()
    pct = np.stack([m.percentile for m in result.methods], axis=1)
    t["_mean_pct"] = pct.mean(axis=1)
    t["_row"] = np.arange(len(t))
    t = t.sort_values(["flagged", "n_methods_flagged", "closeness", "_mean_pct"],
                      ascending=[False, False, True, True], kind="stable")
    return t.head(n)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2125;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px} .sub{color:#5b6470;font-size:13px}
.verdict{display:inline-block;padding:6px 14px;border-radius:6px;font-weight:600;margin:12px 0;font-size:15px}
.pass{background:#d9f2e0;color:#145c2c;border:1px solid #8fd1a4}.fail{background:#fde2e1;color:#8a1c17;border:1px solid #f0a19c}
table.m{border-collapse:collapse;font-size:13px;background:#fff} table.m td,table.m th{border:1px solid #dde1e6;padding:5px 9px;text-align:left}
table.m th{background:#eef1f4} .note{font-size:12px;color:#5c4400;background:#fff8e1;border:1px solid #f0dc8c;padding:6px 12px;border-radius:4px;margin:4px 0} .note ul{margin:4px 0;padding-left:18px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:14px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:10px 12px}
.card.flag{border:2px solid #d9534f;background:#fff8f8}
.imgs{display:flex;gap:8px} .imgs figure{margin:0;text-align:center;font-size:11px;color:#5b6470}
.imgs img{width:176px;height:176px;border-radius:4px;background:#000;display:block}
.hdr{font-size:13px;margin-bottom:6px;display:flex;justify-content:space-between;align-items:baseline}
.rank{font-weight:700;color:#3a4450} .badge{font-size:11px;padding:1px 7px;border-radius:10px;background:#d9534f;color:#fff;margin-left:6px}
.badge.ok{background:#8a96a3}
table.s{font-size:11.5px;border-collapse:collapse;margin-top:6px;width:100%} table.s td{padding:2px 6px;border-top:1px solid #eef0f2}
td.hit{color:#b52b27;font-weight:600} img.fig{max-width:100%;background:#fff;border:1px solid #dde1e6;border-radius:6px}
"""


def render_report(result: AuditResult, inputs: AuditInputs, fig_dir: Path, n_pairs: int) -> str:
    s = result.summary
    esc = html.escape
    train_pos = {tid: i for i, tid in enumerate(inputs.train_ids)}
    passed = s["passed"]
    if s["n_flagged"] == 0:
        verdict = f"PASSED — none of {s['n_samples']} synthetic images is closer to a training image than real unseen images are"
    elif passed:
        verdict = f"PASSED after excluding {s['n_excluded']} flagged image(s) of {s['n_samples']}"
    else:
        verdict = f"FAILED — {s['n_flagged']} of {s['n_samples']} synthetic images flagged; rerun with --exclude-flagged to release the rest"
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Privacy audit</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Privacy audit: synthetic images against their training images</h1>",
        f"<div class='sub'>{s['n_samples']} synthetic · {s['n_train']} training · {s['n_holdout']} holdout (real, unseen; "
        f"calibration) · methods: {esc(', '.join(s['methods_run']))}</div>",
        f"<div class='verdict {'pass' if passed else 'fail'}'>{esc(verdict)}</div>",
    ]
    if s.get("notes"):
        out.append("<div class='note'><b>Notes</b><ul>" + "".join(f"<li>{esc(n)}</li>" for n in s["notes"]) + "</ul></div>")
    out.append("<h2>Methods</h2><table class='m'><tr><th>method</th><th>embedder</th><th>flag when nearest training image is</th>"
               "<th>flagged</th><th>synthetic closer to train than holdout (50% ideal)</th><th>median distance syn→train / holdout→train</th></tr>")
    for m in result.methods:
        dcr = s["dcr"][m.name]
        out.append(
            f"<tr><td><b>{m.name}</b></td><td>{esc(m.describe)}</td><td>{threshold_text(m)}</td>"
            f"<td>{s['n_flagged_by_method'][m.name]}</td><td>{dcr['closer_to_train_share']:.1%}</td>"
            f"<td>{fmt(m, dcr['synthetic_to_train']['median'])} / {fmt(m, dcr['holdout_to_train']['median'])}</td></tr>"
        )
    out.append("</table>")
    out.append(f"<div class='sub' style='margin-top:6px'>{esc(s['flag_rule'])}</div>")
    head, rows = power_rows(result)
    if rows:
        out.append("<h2>How strong this check is</h2><div class='sub'>Copies of training images under each change "
                   "(in memory, never released), searched like the synthetic images at the same thresholds: the share "
                   "flagged is the audit's measured recall; the last row is the chance false-flag rate on unseen real "
                   "images.</div><table class='m'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
        out.append("</table>")
    out.append("<h2>Distances to the nearest training image</h2>")
    for name in ("distances.png", "dcr.png"):
        if (fig_dir / name).is_file():
            out.append(f"<img class='fig' src='{file_uri(fig_dir / name)}' alt='{name}'><br>")
    pairs = ranked_pairs(result, n_pairs)
    out.append(f"<h2>The {len(pairs)} most similar pairs</h2><div class='sub'>Sorted: flagged first (by how many methods flag them), then by the lowest "
               "holdout percentile over methods (the share of real unseen images at least as close to training; "
               "0% = closer than every one of them). Training neighbour shown: the one of the method that ranks the pair closest.</div><br>")
    out.append("<div class='grid'>")
    for rank, (_, row) in enumerate(pairs.iterrows(), 1):
        i = int(row["_row"])
        best = min(result.methods, key=lambda m: (m.percentile[i], m.dist[i] if m.metric == "cosine" else 0))
        nn_id = row[f"{best.name}_nn_id"]
        syn, tr = inputs.synth[i], inputs.train[train_pos[nn_id]]
        badge = "<span class='badge'>FLAGGED</span>" if row["flagged"] else "<span class='badge ok'>not flagged</span>"
        if row["excluded"]:
            badge += "<span class='badge ok'>excluded</span>"
        badge = f"<span>{badge}</span>"
        out.append(f"<div class='card{' flag' if row['flagged'] else ''}'>")
        out.append(f"<div class='hdr'><span><span class='rank'>#{rank}</span> {esc(str(row['image_id']))} ↔ "
                   f"{esc(str(nn_id))} <span class='sub'>(by {best.name})</span></span>{badge}</div>")
        out.append("<div class='imgs'>"
                   f"<figure><img src='{png_uri(syn)}' alt='synthetic'>synthetic</figure>"
                   f"<figure><img src='{png_uri(tr)}' alt='training'>nearest training</figure>"
                   f"<figure><img src='{png_uri(diff_image(syn, tr))}' alt='difference'>|difference| (normalised)</figure>"
                   "</div><table class='s'>")
        for m in result.methods:
            hit = bool(row[f"{m.name}_flag"])
            same = "" if row[f"{m.name}_nn_id"] == nn_id else f" (nearest: {esc(str(row[f'{m.name}_nn_id']))})"
            out.append(f"<tr><td>{m.name}</td><td class='{'hit' if hit else ''}'>{fmt(m, row[f'{m.name}_score'])}{same}</td>"
                       f"<td>threshold {threshold_text(m)}</td><td>holdout pct {row[f'{m.name}_holdout_pct']:.1%}</td></tr>")
        out.append("</table></div>")
    out.append("</div></body></html>")
    return "\n".join(out)


# -- the audit's own power -----------------------------------------------------------------------------
def power_rows(result: AuditResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the measured-recall table (privacy.power): per change family, the share of planted
    copies each method flags, the share the audit's rule flags, and the holdout false-flag rate last."""
    p = result.summary.get("power") or {}
    fams = p.get("families") or {}
    if not fams:
        return [], []
    methods = [m.name for m in result.methods]
    head = ["change (copies of training images)", "n", *methods, "audit (its flag rule)"]
    rows = [[fam.replace("_", " "), str(r["n"]), *(f"{r[m]:.0%}" for m in methods), f"{r['audit']:.0%}"]
            for fam, r in fams.items()]
    fp = p.get("holdout_false_flag_rate", {})
    rows.append(["held-out real images flagged (false flags, by chance)", "",
                 *(f"{fp.get(m, float('nan')):.1%}" for m in methods), ""])
    return head, rows


def power_markdown(result: AuditResult) -> list[str]:
    head, rows = power_rows(result)
    if not rows:
        return []
    n = (result.summary.get("power") or {}).get("copies_per_family")
    return ["", "#### How strong this check is (measured by the audit on itself)", "",
            f"The audit copied {n} training images under each change below (in memory; none is released), searched "
            "them like the synthetic images and applied the same calibrated thresholds. The share it flags is its "
            "measured recall for that kind of near-copy; the last row is the share of unseen real images it would "
            "flag by chance.", "",
            "| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


# -- summary.md ------------------------------------------------------------------------------------
def render_markdown(result: AuditResult) -> str:
    s = result.summary
    lines = [
        "### Privacy audit",
        "",
        f"**{'Passed' if s['passed'] else 'Failed'}.** {s['n_samples']} synthetic images were compared with "
        f"{s['n_train']} training images by nearest-neighbour search ({', '.join(s['methods_run'])}); thresholds "
        f"were calibrated on {s['n_holdout']} held-out real images. Flagged: {s['n_flagged']}; "
        f"excluded from the release: {s['n_excluded']}.",
        "",
        "| method | flagged | synthetic closer to train than holdout (50% ideal) | median distance syn→train | median holdout→train |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in result.methods:
        d = s["dcr"][m.name]
        lines.append(f"| {m.name} | {s['n_flagged_by_method'][m.name]} | {d['closer_to_train_share']:.1%} | "
                     f"{fmt(m, d['synthetic_to_train']['median'])} | {fmt(m, d['holdout_to_train']['median'])} |")
    lines += power_markdown(result)
    lines += ["", "![Distances to the nearest training image](figures/distances.png)", ""]
    for note in s.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def write_outputs(run: RunDir, result: AuditResult, inputs: AuditInputs, n_pairs: int) -> None:
    """Write everything under audit/ (summary.json last)."""
    out = run.audit
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out / "audit.parquet") as tmp:
        result.table.to_parquet(tmp, index=False)
    plot_distances(result, fig_dir / "distances.png")
    plot_dcr(result, fig_dir / "dcr.png")
    atomic.write_text(out / "report.html", render_report(result, inputs, fig_dir, n_pairs))
    atomic.write_text(out / "summary.md", render_markdown(result))
    atomic.write_json(out / "summary.json", result.summary)
