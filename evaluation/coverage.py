"""Coverage and bias of a conditional synthetic set: whom does it represent, and how well, per curvature
class, sex and age band? (Part of `cspine evaluate`'s utility evaluation, utility.json key ``coverage``.)

Where it sits: evaluation/, called by evaluation.utility. Per grouping it reports the share of each group
in the real training set and in the synthetic set, and per group the improved precision and recall
(evaluation.metrics.precision_recall) of the group's synthetic images against the group's real training
images in Inception feature space (features from evaluation.features.set_features, shared cache), beside
the same score of the group's real holdout images against its real training images (the real-vs-real
yardstick: with few images per group, recall is far below 1 even for real data).

Decisions:
- Curvature groups of synthetic images are the classes they were requested with. Synthetic images carry
  no sex or age, so these are *predicted*: a classifier (evaluation.small_models, one seed) trained on
  the real training images with a known sex / age band calls each synthetic image. Its balanced accuracy
  on the real holdout (with a bootstrap interval) says how far to trust the calls, and the same classifier's
  calls on the real holdout give the share to compare against (its own bias cancels; the holdout's true
  shares are listed too). A classifier whose interval reaches chance is marked ``informative: false`` and
  its groups are not judged.
- Intervals: shares get Wilson intervals; precision and recall get Wilson intervals of the share of images
  inside the other set's k-NN manifold, taking the manifolds as given (they are not resampled: a bootstrap
  would put duplicates at distance 0 and inflate both).
- Age bands are evaluate.utility.age_bands (edges in years); images without an age (or sex) are left out of
  that grouping and counted.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from cspine import rundata
from cspine.rundir import RunDir
from evaluation import metrics
from evaluation import utility_scores as us
from evaluation.data import ImageSet
from evaluation.fidelity_data import CURVATURE_CLASSES, LabelledSet
from evaluation.fidelity_scores import wilson
from evaluation.small_models import predict_proba

SEXES = ("F", "M")


def real_metadata(run: RunDir, ids: list[str]) -> dict[str, list]:
    """Sex ("M" / "F" / None) and age (int years / None) of the real images ``ids`` from data/index.parquet's labels."""
    index = rundata.real_index(run).set_index("image_id")
    sex, age = [], []
    for image_id in ids:
        labels = rundata.labels_cell(index.at[image_id, "labels"], f"{run.index} (image {image_id})")
        s, a = labels.get("sex"), labels.get("age")
        sex.append(s if s in SEXES else None)
        age.append(int(a) if isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) else None)
    return {"sex": sex, "age": age}


def age_band_names(edges: list[int]) -> list[str]:
    """Band names for ``edges`` [40, 60] -> ["<40", "40-59", ">=60"]."""
    e = sorted(edges)
    return [f"<{e[0]}"] + [f"{a}-{b - 1}" for a, b in zip(e, e[1:])] + [f">={e[-1]}"]


def age_bands(ages: list, edges: list[int]) -> list[str | None]:
    names = age_band_names(edges)
    return [None if a is None else names[int(np.searchsorted(sorted(edges), a, side="right"))] for a in ages]


def _pr(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    if min(len(real), len(fake)) <= k:
        return {"skipped": f"needs more than k={k} images per set ({len(real)} real, {len(fake)} synthetic)"}
    pr = metrics.precision_recall(real, fake, k)
    return {"precision": pr["precision"], "precision_ci95": list(wilson(round(pr["precision"] * len(fake)), len(fake))),
            "recall": pr["recall"], "recall_ci95": list(wilson(round(pr["recall"] * len(real)), len(real))),
            "n_real": len(real), "n_synthetic": len(fake), "k": k}


def _group_pr(groups: list[str], real_lab, holdout_lab, synth_lab, feats: dict | None, k: int) -> dict:
    if feats is None:
        return {g: {"skipped": "no image features given"} for g in groups}
    out = {}
    for g in groups:
        r = feats["train"][np.asarray([x == g for x in real_lab], bool)]
        s = feats["synthetic"][np.asarray([x == g for x in synth_lab], bool)]
        h = feats["holdout"][np.asarray([x == g for x in holdout_lab], bool)]
        out[g] = {"synthetic_vs_train": _pr(r, s, k), "holdout_vs_train": _pr(r, h, k)}
    return out


def _predicted_grouping(name: str, groups: list[str], train_lab: list, holdout_lab: list, train: LabelledSet,
                        holdout: LabelledSet, synth: LabelledSet, uc, feats, k, log) -> dict:
    from evaluation.utility import fit_classifier

    code = {g: i for i, g in enumerate(groups)}
    tr = np.asarray([i for i, x in enumerate(train_lab) if x in code], np.int64)
    ho = np.asarray([i for i, x in enumerate(holdout_lab) if x in code], np.int64)
    y = np.asarray([code[train_lab[i]] for i in tr], np.int64)
    present = np.unique(y)
    if len(tr) < 8 or len(present) < 2:
        return {"skipped": f"{len(tr)} real training images with a known {name} in {len(present)} groups "
                           "(need >= 8 in >= 2 groups)"}
    log(f"evaluate: utility: {name} classifier on {len(tr)} real training images (to call the synthetic images)")
    net = fit_classifier(train.pixels[tr], y, len(groups), uc, uc.seed)
    s_pred = [groups[i] for i in predict_proba(net, synth.pixels).argmax(1)]
    h_pred = [groups[i] for i in predict_proba(net, holdout.pixels).argmax(1)]
    res: dict = {"labels": "real: recorded; synthetic: predicted by a classifier trained on the real training images",
                 "n_train_classifier": len(tr), "missing_in_train": len(train_lab) - len(tr),
                 "shares": {"train": us.shares(train_lab, groups), "holdout": us.shares(holdout_lab, groups),
                            "holdout_predicted": us.shares(h_pred, groups), "synthetic_predicted": us.shares(s_pred, groups)}}
    if len(ho) >= 2:
        ht = np.asarray([code[holdout_lab[i]] for i in ho], np.int64)
        hp = np.asarray([code[h_pred[i]] for i in ho], np.int64)
        b = us.paired_bootstrap({"ba": lambda si, ix: us.class_scores(ht[ix], hp[ix], len(groups))[0]}, 1, len(ho),
                                uc.bootstrap, uc.seed + 7, strata=ht)
        chance = 1 / len(np.unique(ht))
        ci = us.percentile_ci(b["ba"]["reps"])
        res["classifier"] = {"holdout_balanced_accuracy": b["ba"]["point"], "ci95": ci, "chance": chance,
                             "n_holdout": len(ho), "informative": bool(np.isfinite(ci[0]) and ci[0] > chance)}
    else:
        res["classifier"] = {"holdout_balanced_accuracy": None, "informative": False,
                             "note": f"fewer than 2 holdout images with a known {name}"}
    res["precision_recall"] = _group_pr(groups, train_lab, holdout_lab, s_pred, feats, k)
    return res


def coverage(train: LabelledSet, holdout: LabelledSet, synth: LabelledSet, uc, *, meta: dict | None,
             features: Callable[[ImageSet], np.ndarray] | None, pr_k: int, log: Callable[[str], None] = print) -> dict:
    """Shares and per-group precision / recall by curvature class, sex and age band (see the module docstring)."""
    feats = None
    if features is not None:
        feats = {"train": features(train.image_set()), "holdout": features(holdout.image_set()),
                 "synthetic": features(synth.image_set())}
    names = [str(c) for c in CURVATURE_CLASSES]
    lab = {s.name: [str(c) if c > 0 else None for c in s.curvature] for s in (train, holdout)}
    syn = [str(c) if c > 0 else None for c in synth.curvature]
    out: dict = {
        "pr_k": pr_k, "features": "FID Inception-v3 pool features (cspine.inception)" if feats else None,
        "curvature": {"labels": "real: annotated; synthetic: requested class",
                      "group_names": {k: v for k, v in zip(names, CURVATURE_CLASSES.values())},
                      "shares": {"train": us.shares(lab["train"], names), "holdout": us.shares(lab["holdout"], names),
                                 "synthetic": us.shares(syn, names)},
                      "precision_recall": _group_pr(names, lab["train"], lab["holdout"], syn, feats, pr_k)},
    }
    meta = meta or {}
    tm, hm = meta.get("train") or {}, meta.get("holdout") or {}
    if tm.get("sex") and any(tm["sex"]):
        out["sex"] = _predicted_grouping("sex", list(SEXES), tm["sex"], hm.get("sex") or [None] * len(holdout),
                                         train, holdout, synth, uc, feats, pr_k, log)
    else:
        out["sex"] = {"skipped": "the real images carry no sex"}
    if tm.get("age") and any(a is not None for a in tm["age"]):
        bands = age_band_names(uc.age_bands)
        out["age_band"] = _predicted_grouping("age band", bands, age_bands(tm["age"], uc.age_bands),
                                              age_bands(hm.get("age") or [None] * len(holdout), uc.age_bands),
                                              train, holdout, synth, uc, feats, pr_k, log)
        if "skipped" not in out["age_band"]:
            out["age_band"]["edges"] = sorted(uc.age_bands)
    else:
        out["age_band"] = {"skipped": "the real images carry no age"}
    return out
