"""The `cspine evaluate` stage: reads data/, model/, samples/ of a run and writes eval/.

Steps: load real holdout/train images and synthetic samples; embed them with the bundled FID Inception
(through the shared feature cache); FID/KID/precision/recall against holdout and, apart, against
training images, with a real-vs-real floor; FRD; MS-SSIM diversity; the classifier two-sample test; optionally the checkpoint curve and
the sampler speed-quality curve; the classifier two-sample test (evaluation.separability); for conditional
samples the control and label fidelity (evaluation.fidelity, key ``fidelity``) and the downstream utility
and coverage (evaluation.utility, eval/utility.json); then metrics.json, figures and summary.md.
Finished work is skipped: the main metrics and the fidelity metrics when their inputs are unchanged
(a fingerprint each), curve points per setting (eval/*_curve.json).
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np

from cspine import atomic
from cspine import provenance, rundata
from cspine.config import RunConfig
from cspine.inception import network_id
from cspine.rundir import RunDir
from evaluation import curves, fidelity, metrics, report, utility, washout
from evaluation.data import ImageSet, load_real, load_samples
from evaluation.features import set_features
from evaluation.separability import c2st_metric


#: Parts of the evaluate config with their own skip logic, left out of the main metrics' fingerprint.
_APART = {"checkpoint_curve", "sampler_curve", "fidelity", "utility"}


def _fingerprint(cfg: RunConfig, run: RunDir) -> str:
    """What the main metrics depend on, by content: their settings, the network, the data and the samples.
    (The stage's record decides whether evaluate runs; this keeps the main metrics when only a curve is
    asked for, `cspine evaluate --samplers`.)"""
    return provenance.digest({"evaluate": cfg.evaluate.model_dump(mode="json", exclude=_APART),
                              "network": network_id(), "data": rundata.data_fp(run), "samples": rundata.samples_fp(run)})[:16]


def compare(real: np.ndarray, fake: np.ndarray, k: int, kid_subset: int, kid_subsets: int, seed: int) -> dict:
    """FID (torchmetrics), KID, improved precision/recall of two Inception feature sets."""
    kd = metrics.kid(real, fake, subset_size=kid_subset, subsets=kid_subsets, seed=seed)
    out = {"n_real": len(real), "n_fake": len(fake), "fid": metrics.fid(real, fake), "kid": kd["mean"],
           "kid_std": kd["std"], "kid_subset_size": kd["subset_size"], "note": metrics.fid_bias_note(len(real), len(fake))}
    if min(len(real), len(fake)) > k:
        out.update({kk: v for kk, v in metrics.precision_recall(real, fake, k).items()})
    else:
        out.update({"precision": None, "recall": None, "k": k})
    return out


def run_evaluate(cfg: RunConfig, run: RunDir, *, checkpoints: bool = False, samplers: bool = False,
                 force: bool = False, redo_utility: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print) -> dict:
    """Run the stage; returns the content of eval/metrics.json (the utility evaluation, written to
    eval/utility.json, is under the key ``utility`` of the returned dict only, for the summary line)."""
    ec = cfg.evaluate
    run.eval.mkdir(parents=True, exist_ok=True)
    figs = run.eval / "figures"
    metrics_path = run.eval / "metrics.json"
    try:
        old = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    except json.JSONDecodeError:
        old = {}  # unreadable (should not happen: written atomically): recompute everything
    fp = _fingerprint(cfg, run)

    run.require(run.samples_table, "sample")  # fail before any embedding work
    holdout = load_real(run, "holdout", ec.max_images, ec.seed)
    train = load_real(run, "train", ec.max_images, ec.seed + 1)
    ref = holdout if len(holdout) >= 2 else train
    if len(ref) < 2:
        raise ValueError(f"{run.index}: fewer than 2 real images in holdout and train; nothing to compare with")
    feats = {s.name: set_features(s, batch_size=ec.batch_size, progress=progress) for s in (holdout, train) if len(s)}
    ref_feats = feats[ref.name]

    if not force and old.get("fingerprint") == fp and "vs_holdout" in old:
        log("evaluate: main metrics up to date (inputs unchanged); skipping them")
        m = {k: v for k, v in old.items() if k not in _APART}
    else:
        m = _main_metrics(cfg, run, holdout, train, feats, progress, log)
        m["fingerprint"] = fp

    m["fidelity"] = fidelity.run_fidelity(
        cfg, run, lambda s: set_features(s, batch_size=ec.batch_size, progress=progress), old=old.get("fidelity"),
        force=force, log=log)

    u = utility.run_utility(cfg, run, lambda s: set_features(s, batch_size=ec.batch_size, progress=progress),
                            force=force or redo_utility, log=log)

    seed = cfg.seed + ec.sample_seed_offset
    if checkpoints:
        cc = ec.checkpoint_curve
        m["checkpoint_curve"] = curves.checkpoint_curve(
            run, ref_feats, num_images=cc.num_images, scheduler=cc.scheduler, steps=cc.steps, seed=seed,
            batch_size=ec.batch_size, kid_subset=ec.kid_subset_size, kid_subsets=ec.kid_subsets, progress=progress,
            log=log)
        if m["checkpoint_curve"]:
            report.plot_checkpoint_curve(m["checkpoint_curve"], run.loss_log, figs / "checkpoint_curve.png")
    elif old.get("checkpoint_curve"):
        m["checkpoint_curve"] = old["checkpoint_curve"]
    if samplers:
        sc = ec.sampler_curve
        rows = curves.sampler_curve(
            run, ref_feats, points=[(p.scheduler, p.steps) for p in sc.points], checkpoint=sc.checkpoint,
            num_images=sc.num_images, seed=seed, batch_size=ec.batch_size, kid_subset=ec.kid_subset_size,
            kid_subsets=ec.kid_subsets, progress=progress, log=log)
        rec = curves.recommend_sampler(rows)
        m["sampler_curve"] = {"points": rows, "recommended": rec, "reference_set": ref.name,
                              "device": curves.timing_devices(rows)}
        report.plot_sampler_curve(rows, rec, figs / "sampler_curve.png")
    elif old.get("sampler_curve"):
        m["sampler_curve"] = old["sampler_curve"]

    atomic.write_json(metrics_path, m)
    atomic.write_text(run.eval / "summary.md", report.summary_markdown(m, utility=u))
    return {**m, "utility": u}


def _main_metrics(cfg: RunConfig, run: RunDir, holdout: ImageSet, train: ImageSet, feats: dict, progress: bool,
                  log: Callable[[str], None]) -> dict:
    ec = cfg.evaluate
    synth = load_samples(run, ec.max_images, ec.seed + 2)
    if len(synth) < 2:
        raise ValueError(f"{run.samples_table}: fewer than 2 synthetic images; run `cspine sample` first")
    if synth.pixels.shape[1:] != (holdout.pixels if len(holdout) else train.pixels).shape[1:]:
        raise ValueError(f"{run.samples}: synthetic images are {synth.pixels.shape[1:]} but the real ones are "
                         f"{train.pixels.shape[1:]}")
    f_syn = set_features(synth, batch_size=ec.batch_size, progress=progress)
    args = dict(k=ec.pr_k, kid_subset=ec.kid_subset_size, kid_subsets=ec.kid_subsets, seed=ec.seed)
    m: dict = {
        "network": network_id(),
        "sets": {"synthetic": len(synth), "holdout": len(holdout), "train": len(train)},
        "config": ec.model_dump(mode="json", exclude=_APART),
    }
    log(f"evaluate: FID/KID/precision/recall on {len(synth)} synthetic, {len(holdout)} holdout, {len(train)} train")
    if len(holdout) >= 2:
        m["vs_holdout"] = compare(feats["holdout"], f_syn, **args)
    if len(train) >= 2:
        m["vs_train"] = compare(feats["train"], f_syn, **args)
    if len(holdout) >= 2 and len(train) >= 2:
        m["real_floor"] = compare(feats["train"], feats["holdout"], **args)

    if len(train) >= 2:  # the washed-out rule (evaluation/washout.py): contrast below the real training images' 1%
        line = washout.threshold(train.pixels)
        m["washed_out"] = {"rule": "contrast (sd of intensities) below the real training images' 1% quantile",
                           "contrast_line": line, "synthetic": washout.washed_out_share(synth.pixels, line),
                           "holdout": washout.washed_out_share(holdout.pixels, line) if len(holdout) else None}

    # per checkpoint present in samples/ (KID and the fast exact FID)
    import pandas as pd

    table = pd.read_parquet(run.samples_table)
    ref = feats["holdout"] if len(holdout) >= 2 else feats["train"]
    by_ckpt = {}
    for ckpt in sorted(table["checkpoint"].astype(str).unique()):
        s = load_samples(run, ec.max_images, ec.seed + 2, checkpoint=ckpt)
        if len(s) >= 2 and table["checkpoint"].nunique() > 1:
            f = set_features(s, batch_size=ec.batch_size, progress=progress)
            kd = metrics.kid(ref, f, ec.kid_subset_size, ec.kid_subsets, ec.seed)
            by_ckpt[ckpt] = {"n": len(s), "kid": kd["mean"], "kid_std": kd["std"],
                             "fid": metrics.frechet_distance_lowrank(ref, f)}
    if by_ckpt:
        m["by_checkpoint"] = by_ckpt

    # radiograph-specific: FRD
    frd: dict = {}
    if not ec.frd:
        frd["skipped"] = "disabled (evaluate.frd: false)"
    elif (reason := __import__("evaluation.radiomics", fromlist=["frd_available"]).frd_available()):
        frd["skipped"] = reason
    else:
        from evaluation.radiomics import frd as frd_fn

        cap = ec.frd_max_images
        real_set = holdout if len(holdout) >= 2 else train
        log(f"evaluate: FRD on {min(cap, len(synth))} synthetic / {min(cap, len(real_set))} real images")
        frd = {"vs_holdout": frd_fn(real_set.pixels[:cap], synth.pixels[:cap]), "n_real": min(cap, len(real_set)),
               "n_fake": min(cap, len(synth)), "reference": real_set.name, "package": "frd-score v1"}
        if len(holdout) >= 2 and len(train) >= 2:
            frd["real_floor"] = frd_fn(train.pixels[:cap], holdout.pixels[:cap])
    m["frd"] = frd

    log("evaluate: MS-SSIM diversity")
    div = {"synthetic": metrics.diversity(synth.unit(), ec.diversity_pairs, ec.seed)}
    for s in (holdout, train):
        if len(s) >= 2:
            div[s.name] = metrics.diversity(s.unit(), ec.diversity_pairs, ec.seed)
    m["diversity"] = div
    ref_set = holdout if len(holdout) >= 2 else train
    log(f"evaluate: classifier two-sample test, synthetic vs {ref_set.name}")
    m["c2st"] = c2st_metric(ref_set, synth, ec.c2st, run.eval / "figures" / "c2st_most_synthetic.png")
    report.plot_examples((holdout if len(holdout) else train).unit(), synth.unit(), run.eval / "figures" / "examples.png")
    report.plot_synthetic(synth.unit(), run.eval / "figures" / "synthetic_examples.png")
    return m
