"""The audit itself: embed, search, calibrate, flag, for arrays of images (no file output here).

Where it sits: `cspine audit` (privacy/cli.py) reads a run with privacy/inputs.py, calls
:func:`audit_arrays`, then writes audit/ with privacy/outputs.py. For every method (privacy/embedders.py):

1. features of training, holdout and synthetic images (cached by pixel hash in the shared FeatureCache);
2. top-k training neighbours of every synthetic image, and the nearest training distance of every holdout
   image (privacy/search.py, chunked);
3. the calibrated threshold and flags (privacy/calibrate.py), DCR shares and distributions.

A synthetic image is flagged when at least ``min_methods`` methods flag it, or any absolute floor does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cspine.feature_cache import FeatureCache, image_key
from privacy import calibrate as cal
from privacy import power
from cspine.gate import flag_ceiling
from privacy.embedders import DistanceScale, Embedder
from privacy.inputs import AuditInputs
from privacy.search import nearest, topk

log = logging.getLogger("cspine.audit")


@dataclass
class MethodResult:
    name: str
    describe: str
    metric: str
    scale: DistanceScale
    threshold: cal.Threshold
    nn_idx: np.ndarray  # [n_synth, k] training indices
    nn_dist: np.ndarray  # [n_synth, k]
    holdout_dist: np.ndarray  # [n_holdout] holdout -> train nearest distance
    synth_to_holdout: np.ndarray  # [n_synth]
    synth_to_train_subset: np.ndarray  # [n_synth], train subset of the holdout's size
    flags: np.ndarray
    floor_hits: np.ndarray
    percentile: np.ndarray
    timing: dict = field(default_factory=dict)
    power_flags: np.ndarray | None = None  # [n_planted] this method's flag on each planted copy (privacy.power)
    power_floor: np.ndarray | None = None  # [n_planted] floor hits among them
    power_found: np.ndarray | None = None  # [n_planted] nearest training image is the copy's own source

    @property
    def dist(self) -> np.ndarray:
        return self.nn_dist[:, 0]


@dataclass
class AuditResult:
    table: pd.DataFrame
    methods: list[MethodResult]
    summary: dict


def embed_all(
    emb: Embedder, images: np.ndarray, cache: FeatureCache, progress: bool, what: str, base: bool = False
) -> tuple[np.ndarray, int, float]:
    """Search-ready features of ``images`` via the cache (``base``: as reference images); (#computed, s)."""
    t0 = time.perf_counter()
    keys = [image_key(a) for a in images]
    computed = [0]
    compute = emb.compute_base if base else emb.compute

    def fn(batch: np.ndarray) -> np.ndarray:
        computed[0] += len(batch)
        return compute(batch)

    raw = cache.embed(emb.base_method_id if base else emb.method_id, images, keys, fn,
                      batch_size=emb.batch_size, progress=progress, desc=f"{emb.name}: {what}")
    feats = emb.finalise_base(raw) if base else emb.finalise(raw)
    return feats, computed[0], time.perf_counter() - t0


def subset_rows(base: np.ndarray, groups: int, idx: np.ndarray) -> np.ndarray:
    """Rows of reference items ``idx`` of a group-major base matrix."""
    if groups == 1:
        return base[idx]
    n = len(base) // groups
    return base.reshape(groups, n, -1)[:, idx].reshape(groups * len(idx), -1)


def audit_method(
    emb: Embedder, inputs: AuditInputs, cfg, cache: FeatureCache, progress: bool = True, seed: int = 0,
    planted: tuple[np.ndarray, np.ndarray] | None = None,
) -> MethodResult:
    """Run one method of the audit (see the module docstring). ``planted``: (copies of training images,
    their source rows), searched like synthetic images to measure the method's power (privacy.power)."""
    if getattr(emb, "verifies", False):
        return _audit_verified(emb, inputs, cfg, seed, planted)
    g = emb.groups
    b_train, c1, t1 = embed_all(emb, inputs.train, cache, progress, "train", base=True)
    q_hold, c2, t2 = embed_all(emb, inputs.holdout, cache, progress, "holdout")
    q_syn, c3, t3 = embed_all(emb, inputs.synth, cache, progress, "synthetic")
    b_hold, c4 = q_hold, 0
    if g > 1:  # the DCR check compares with the holdout as reference set: same alignment as for train
        b_hold, c4, t4 = embed_all(emb, inputs.holdout, cache, progress, "holdout (reference)", base=True)
        t3 += t4
    t0 = time.perf_counter()
    kw = dict(chunk_size=cfg.chunk_size, groups=g)
    nn_idx, nn_dist = topk(q_syn, b_train, cfg.top_k, emb.metric, progress=progress, desc=f"{emb.name}: search", **kw)
    hold_dist = nearest(q_hold, b_train, emb.metric, **kw)
    syn_hold = nearest(q_syn, b_hold, emb.metric, **kw)
    rng = np.random.default_rng(seed)
    n_train = len(inputs.train)
    sub = rng.choice(n_train, size=min(n_train, len(inputs.holdout)), replace=False)
    syn_sub = nearest(q_syn, subset_rows(b_train, g, sub), emb.metric, **kw)
    t_search = time.perf_counter() - t0
    thr = cal.calibrate(emb.name, hold_dist, cfg.holdout_quantile, emb.floor, cfg.floor_max_holdout_share)
    n_img = len(inputs.train) + len(inputs.holdout) + len(inputs.synth)
    computed = c1 + c2 + c3 + c4
    embed_s = t1 + t2 + t3
    power = {}
    if planted is not None and len(planted[0]):
        q_pl, _, t_pl = embed_all(emb, planted[0], cache, progress, "planted copies (power)")
        pl_idx, pl_dist = topk(q_pl, b_train, 1, emb.metric, **kw)
        power = dict(power_flags=thr.flags(pl_dist[:, 0]), power_floor=thr.floor_hits(pl_dist[:, 0]),
                     power_found=pl_idx[:, 0] == planted[1])
        embed_s += t_pl
    timing = {
        "images": n_img, "computed": computed, "cache_hits": n_img - min(computed, n_img),
        "embed_s": round(embed_s, 3), "search_s": round(t_search, 3),
        "images_per_s": round(n_img / (embed_s + t_search), 2) if embed_s + t_search > 0 else None,
    }
    return _result(emb, thr, nn_idx, nn_dist, hold_dist, syn_hold, syn_sub, timing, power)


def _result(emb, thr, nn_idx, nn_dist, hold_dist, syn_hold, syn_sub, timing, power) -> MethodResult:
    d = nn_dist[:, 0]
    return MethodResult(
        name=emb.name, describe=emb.describe, metric=emb.metric, scale=emb.scale, threshold=thr,
        nn_idx=nn_idx, nn_dist=nn_dist, holdout_dist=hold_dist, synth_to_holdout=syn_hold,
        synth_to_train_subset=syn_sub, flags=thr.flags(d), floor_hits=thr.floor_hits(d),
        percentile=cal.holdout_percentile(d, hold_dist), timing=timing, **power,
    )


def _audit_verified(emb, inputs: AuditInputs, cfg, seed: int, planted) -> MethodResult:
    """A method that is trained on the run and verifies candidates (privacy/copydetect.py): the same
    quantities as :func:`audit_method`, from ``emb.fit`` and ``emb.topk`` (no feature cache)."""
    t0 = time.perf_counter()
    emb.fit(inputs.train, inputs.holdout)
    t_fit = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    n_train = len(inputs.train)
    sub = rng.choice(n_train, size=min(n_train, len(inputs.holdout)), replace=False)
    t0 = time.perf_counter()
    nn_idx, nn_dist = emb.topk(inputs.synth, "train", cfg.top_k)
    hold_dist = emb.holdout_topk(1)[1][:, 0]  # verified once, in fit
    n_dcr = max(1, emb.candidates // 2)  # the DCR shares need only each image's nearest: fewer candidates
    syn_hold = emb.topk(inputs.synth, "holdout", 1, candidates=n_dcr)[1][:, 0]
    syn_sub = emb.topk(inputs.synth, "train", 1, subset=sub, candidates=n_dcr)[1][:, 0]
    t_search = time.perf_counter() - t0
    thr = cal.calibrate(emb.name, hold_dist, cfg.holdout_quantile, emb.floor, cfg.floor_max_holdout_share)
    power = {}
    t_pl = 0.0
    if planted is not None and len(planted[0]):
        t0 = time.perf_counter()
        pl_idx, pl_dist = emb.topk(planted[0], "train", 1)
        t_pl = time.perf_counter() - t0
        power = dict(power_flags=thr.flags(pl_dist[:, 0]), power_floor=thr.floor_hits(pl_dist[:, 0]),
                     power_found=pl_idx[:, 0] == planted[1])
    n_img = len(inputs.train) + len(inputs.holdout) + len(inputs.synth)
    timing = {"images": n_img, "computed": n_img, "cache_hits": 0, "train_s": round(t_fit, 3),
              "embed_s": round(t_fit, 3), "search_s": round(t_search + t_pl, 3),
              "images_per_s": round(n_img / (t_fit + t_search), 2) if t_fit + t_search > 0 else None}
    return _result(emb, thr, nn_idx, nn_dist, hold_dist, syn_hold, syn_sub, timing, power)


def _method_table(m: MethodResult, train_ids: np.ndarray) -> dict[str, object]:
    ids = train_ids[m.nn_idx]
    dist = m.nn_dist.astype(np.float64)
    return {
        f"{m.name}_nn_id": ids[:, 0],
        f"{m.name}_score": dist[:, 0],
        f"{m.name}_flag": m.flags,
        f"{m.name}_holdout_pct": m.percentile,
        f"{m.name}_dist_holdout": m.synth_to_holdout.astype(np.float64),
        f"{m.name}_topk_ids": [list(r) for r in ids],
        f"{m.name}_topk_scores": [list(r) for r in dist],
    }


def power_summary(results: list[MethodResult], planted: tuple, cfg) -> dict:
    """Recall of the planted copies per family and method, and under the audit's own rule, beside each
    method's holdout false-flag rate (see privacy.power)."""
    images, _, names = planted
    if not len(images):
        return {"copies_per_family": 0}
    flags = {m.name: m.power_flags for m in results}
    votes = np.sum(list(flags.values()), axis=0)
    floors = np.any([m.power_floor for m in results], axis=0)
    flagged = (votes >= min(cfg.min_methods, len(results))) | floors
    return {
        "copies_per_family": cfg.power_copies,
        "families": power.recall_table(flags, flagged, {m.name: m.power_found for m in results}, names),
        "holdout_false_flag_rate": {m.name: max(m.threshold.quantile, 1 / (m.threshold.n_holdout + 1))
                                    for m in results},
        "what": "training images copied under each change (in memory, never released), searched like the "
                "synthetic images at the calibrated thresholds: the share flagged is the audit's measured recall",
    }


def audit_arrays(
    inputs: AuditInputs,
    embedders: list[Embedder],
    cfg,
    cache: FeatureCache,
    exclude_flagged: bool,
    notes: list[str] | None = None,
    progress: bool = True,
    seed: int = 0,
) -> AuditResult:
    """Audit ``inputs`` with ``embedders`` under AuditConfig ``cfg``; see the module docstring."""
    if not embedders:
        raise ValueError("audit.methods: no method could run")
    notes = list(inputs.notes) + list(notes or [])
    planted = power.plant(inputs.train, cfg.power_copies, seed + 1)  # in memory only: never written or released
    results = []
    for emb in embedders:
        log.info("audit: %s", emb.describe)
        try:
            results.append(audit_method(emb, inputs, cfg, cache, progress, seed, planted[:2]))
        finally:
            emb.close()
    notes += [f"{m.name}: {m.threshold.floor_note}" for m in results if m.threshold.floor_note]
    n_h = len(inputs.holdout)
    if n_h + 1 < 1 / cfg.holdout_quantile:
        notes.append(
            f"only {n_h} holdout images: each method's calibrated threshold is their closest distance to training, "
            f"so a new image from the same distribution is flagged by chance with probability about 1/{n_h + 1} "
            f"per method; {int(round(1 / cfg.holdout_quantile))} or more holdout images give the configured "
            f"{cfg.holdout_quantile:g} quantile"
        )
    train_ids = np.asarray(inputs.train_ids, dtype=object)
    cols: dict[str, object] = {"image_id": inputs.synth_ids, "file": inputs.synth_files}
    for m in results:
        cols |= _method_table(m, train_ids)
    votes = np.sum([m.flags for m in results], axis=0)
    floors = np.any([m.floor_hits for m in results], axis=0)
    flagged = (votes >= min(cfg.min_methods, len(results))) | floors
    pct = np.stack([m.percentile for m in results], axis=1)
    cols["n_methods_flagged"] = votes.astype(np.int64)
    cols["closeness"] = pct.min(axis=1)  # lowest holdout percentile over methods: 0 = closer than all real
    cols["flagged"] = flagged
    cols["excluded"] = flagged & exclude_flagged
    table = pd.DataFrame(cols)

    n_flagged = int(flagged.sum())
    excluded = table.loc[table["excluded"], "image_id"].tolist()
    ceiling = flag_ceiling({m.name: max(m.threshold.quantile, 1 / (m.threshold.n_holdout + 1))
                            + float(np.mean(m.threshold.floor_hits(m.holdout_dist))) for m in results},
                           len(inputs.synth_ids), getattr(cfg, "max_flag_rate", None)).summary(n_flagged)
    notes += [ceiling["flag_rate_reason"]] if ceiling["flag_rate_exceeded"] else []
    passed = (n_flagged == 0 or exclude_flagged) and not ceiling["flag_rate_exceeded"]
    summary = {
        "passed": bool(passed),
        "exclude_flagged": bool(exclude_flagged),
        "n_samples": len(inputs.synth_ids),
        "n_train": len(inputs.train_ids),
        "n_holdout": len(inputs.holdout_ids),
        "n_flagged": n_flagged,
        "n_excluded": len(excluded),
        "flagged": table.loc[table["flagged"], "image_id"].tolist(),
        "excluded": excluded,
        "methods_run": [m.name for m in results],
        "embedders": {m.name: m.describe for m in results},
        "notes": notes,
        "flag_rule": (
            f"flagged when at least {min(cfg.min_methods, len(results))} method(s) flag it: distance to the "
            f"nearest training image below the {cfg.holdout_quantile:g} quantile of holdout-to-train "
            "distances, or within the method's absolute floor (a floor hit always flags)"
        ),
        "thresholds": {
            m.name: {
                "distance": m.scale.label,
                "calibrated": m.threshold.calibrated, "floor": m.threshold.floor,
                "floor_requested": m.threshold.floor_requested, "floor_note": m.threshold.floor_note,
                "holdout_quantile": m.threshold.quantile, "n_holdout": m.threshold.n_holdout,
                "chance_flag_rate": max(m.threshold.quantile, 1 / (m.threshold.n_holdout + 1)),
            }
            for m in results
        },
        "n_flagged_by_method": {m.name: int(m.flags.sum()) for m in results},
        **ceiling,
        "dcr": {
            m.name: {
                "closer_to_train_share": cal.closer_to_train_share(m.synth_to_train_subset, m.synth_to_holdout),
                "closer_to_train_share_all_train": cal.closer_to_train_share(m.dist, m.synth_to_holdout),
                "synthetic_to_train": cal.distribution(m.dist),
                "holdout_to_train": cal.distribution(m.holdout_dist),
                "synthetic_to_holdout": cal.distribution(m.synth_to_holdout),
            }
            for m in results
        },
        "timing": {m.name: m.timing for m in results},
        "power": power_summary(results, planted, cfg),
    }
    return AuditResult(table=table, methods=results, summary=summary)
