"""Training recipes side by side at equal compute: FID, KID and the washed-out share per recipe.

Not part of `make bench` (each recipe trains a demo model: minutes on a CPU). Run

    python -m bench.recipes --work /tmp/recipes                    # every recipe below
    python -m bench.recipes --work /tmp/recipes today vpred_minsnr  # some of them
    python -m bench.recipes --work /tmp/r --samples 256 --reference 1000 --seed 1 today demo  # issue 14's check

Each recipe is a set of ``--set`` overrides of ``configs/demo.yaml`` (or ``--config``). All recipes share
one phantom folder and the same prepared data, train for the same number of optimizer steps at the same
batch size (equal compute: same images seen, same network), sample with their own config's sampler (the
pre-issue-14 "today" with DDPM-50, as the demo did then), and are scored against the real held-out images:
FID (with a bootstrap interval over the synthetic images), KID (mean and spread over subsets), the
washed-out share (evaluation/washout.py) of real held-out and synthetic images, and the training wall time.
With ``--reference N`` they are also scored against N fresh phantoms (a generator seed no run trains on):
FID is biased upwards by about 1/n, and at the demo's 64 held-out images two sets of real phantoms already
score about 70. Results go to ``WORK/recipes.json`` and a Markdown table on the screen; a finished recipe is
not retrained (delete its folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

UNCOND = ["model.condition.curvature=false", "model.condition.keypoints=false"]
COND = ["model.condition.curvature=true", "model.condition.keypoints=true"]
_VPRED = ["model.prediction_type=v_prediction", "model.beta_schedule=squaredcos_cap_v2", "train.min_snr_gamma=5"]
_LRCOS = ["train.learning_rate=0.002"]  # (the cosine LR decay is the default already)
_EPS = ["model.prediction_type=epsilon", "model.beta_schedule=linear"]

#: configs/demo.yaml as it was when issue 14 was filed (commit 1f93850), every setting the demo has changed
#: since pinned back: unconditional, epsilon, linear betas, uniform timesteps, ancestral DDPM at 50 steps
_TODAY = [*UNCOND, *_EPS, "train.timesteps.distribution=uniform",
          "sample.scheduler=ddpm", "sample.steps=50", "sample.guidance_scale=1.0"]

RECIPES: dict[str, list[str]] = {
    "today": _TODAY,
    "demo": [],  # configs/demo.yaml as it is
    "today_cond": [*COND, *_EPS],  # + curvature class and landmark layout (issue 11)
    "eps_minsnr": [*UNCOND, *_EPS, "train.min_snr_gamma=5"],
    "vpred_cos_minsnr": [*UNCOND, *_VPRED],
    "vpred_cos_minsnr_lrcos": [*UNCOND, *_VPRED, *_LRCOS],
    "vpred_cos_minsnr_cond": [*COND, *_VPRED],
    "vpred_cos_cond": [*COND, "model.prediction_type=v_prediction", "model.beta_schedule=squaredcos_cap_v2"],
    "vpred_lin_cond": [*COND, "model.prediction_type=v_prediction", "model.beta_schedule=linear"],
    "vpred_cos_minsnr_lrcos_cond": [*COND, *_VPRED, *_LRCOS],
    "vpred_zsnr_minsnr": [*UNCOND, "model.prediction_type=v_prediction", "model.beta_schedule=linear",
                          "model.zero_terminal_snr=true", "train.min_snr_gamma=5"],
    # EDM's lognormal training noise levels on the DDPM chain (train.timesteps; training/loss.py)
    "eps_lognormal_cond": [*COND, *_EPS, "train.timesteps.distribution=lognormal"],
    "vpred_cos_lognormal_cond": [*COND, "model.prediction_type=v_prediction", "model.beta_schedule=squaredcos_cap_v2",
                                 "train.timesteps.distribution=lognormal"],
    "vpred_cos_lognormal08_16_cond": [*COND, "model.prediction_type=v_prediction",
                                      "model.beta_schedule=squaredcos_cap_v2", "train.timesteps.distribution=lognormal",
                                      "train.timesteps.mean=-0.8", "train.timesteps.std=1.6"],  # EDM2's ImageNet-64
    "vpred_cos_lognormal16_12_cond": [*COND, "model.prediction_type=v_prediction",
                                      "model.beta_schedule=squaredcos_cap_v2", "train.timesteps.distribution=lognormal",
                                      "train.timesteps.mean=-1.6"],
    "vpred_cos_lognormal20_12_cond": [*COND, "model.prediction_type=v_prediction",
                                      "model.beta_schedule=squaredcos_cap_v2", "train.timesteps.distribution=lognormal",
                                      "train.timesteps.mean=-2.0"],
    "eps_bs8_x2": [*UNCOND, *_EPS, "train.batch_size=8", "train.max_steps=1200", "train.checkpoint_every=200",
                   "train.sample_every=1200"],
}


def cspine(*args: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cspine", *args, "--no-progress"], check=True, env=env)
    return time.perf_counter() - t0


def score(run_dir: Path, reference: np.ndarray | None = None, seed: int = 0) -> dict:
    """FID (bootstrap interval), KID and washed-out share of the run's samples against its held-out images,
    and, with ``reference`` (fresh phantoms of the same generator), against those as well (``ref_*`` keys):
    FID's bias falls as 1/n, so 64 held-out images leave it dominated by the sample size."""
    from cspine.rundata import real_images
    from cspine.rundir import RunDir
    from evaluation import washout

    run = RunDir(run_dir)
    train, hold = real_images(run, "train").pixels, real_images(run, "holdout").pixels
    fake = _samples(run)
    line = washout.threshold(train)
    out = {"n_real": len(hold), "n_fake": len(fake), **_fid_kid(hold, fake, seed), "washout_line": line,
           "washed_out_real": washout.washed_out_share(hold, line),
           "washed_out_synthetic": washout.washed_out_share(fake, line)}
    if reference is not None:
        out |= {"n_ref": len(reference), **{f"ref_{k}": v for k, v in _fid_kid(reference, fake, seed).items()}}
    return out


def _fid_kid(real: np.ndarray, fake: np.ndarray, seed: int) -> dict:
    from cspine.feature_cache import FeatureCache, image_key
    from cspine.inception import inception_features, network_id
    from evaluation import metrics

    cache = FeatureCache()

    def feats(px):
        return cache.embed(network_id(), px, [image_key(a) for a in px],
                           lambda b: inception_features(np.asarray(b)), batch_size=32, progress=False)

    fr, ff = feats(real), feats(fake)
    rng = np.random.default_rng(seed)
    boot = [metrics.fid(fr, ff[rng.integers(0, len(ff), len(ff))]) for _ in range(50)]
    kd = metrics.kid(fr, ff, subset_size=min(50, len(ff), len(fr)), subsets=100, seed=seed)
    return {"fid": metrics.fid(fr, ff), "fid_lo": float(np.percentile(boot, 2.5)),
            "fid_hi": float(np.percentile(boot, 97.5)), "kid": kd["mean"], "kid_std": kd["std"]}


def reference_images(work: Path, n: int, config: str, env: dict) -> np.ndarray:
    """``n`` fresh phantoms (a generator seed no run trains on), prepared like the runs' data, all splits."""
    from cspine.rundata import real_images
    from cspine.rundir import RunDir

    run = work / f"reference-{n}"
    sets = [f"data.path={run / 'raw'}", f"data.phantom.count={n}", f"data.phantom.cases={n}",
            "data.phantom.seed=987654"]
    base = ["--config", config, "--run-dir", str(run), *[x for kv in sets for x in ("--set", kv)]]
    if not (run / "data" / "index.parquet").is_file():
        cspine("demo-data", *base, env=env)
        cspine("prepare", *base, env=env)
    r = RunDir(run)
    return np.concatenate([real_images(r, "train").pixels, real_images(r, "holdout").pixels])


def _samples(run) -> np.ndarray:
    from cspine.rundata import read_sample, samples_table

    table = samples_table(run)
    return np.stack([read_sample(run, f) for f in table["file"]])


def table(results: dict) -> str:
    ref = any("ref_fid" in r for r in results.values())
    head = "| recipe | FID [95% bootstrap] | KID ± sd | washed out (real / synthetic) | train s |"
    head += " reference FID | reference KID |" if ref else ""
    rows = [head, "|" + " --- |" * (head.count("|") - 1)]
    for name, r in results.items():
        row = (f"| {name} | {r['fid']:.1f} [{r['fid_lo']:.1f}, {r['fid_hi']:.1f}] | {r['kid']:.3f} ± {r['kid_std']:.3f} "
               f"| {r['washed_out_real']:.0%} / {r['washed_out_synthetic']:.0%} | {r['train_s']:.0f} |")
        if ref:
            row += (f" {r['ref_fid']:.1f} [{r['ref_fid_lo']:.1f}, {r['ref_fid_hi']:.1f}] | {r['ref_kid']:.4f} ± "
                    f"{r['ref_kid_std']:.4f} |" if "ref_fid" in r else " | |")
        rows.append(row)
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", nargs="*", help=f"recipes to run (default: all of {', '.join(RECIPES)})")
    ap.add_argument("--work", type=Path, required=True, help="folder for the shared data and one run per recipe")
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--set", action="append", default=[], help="an override applied to every recipe")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training and sampling")
    ap.add_argument("--seed", type=int, default=0, help="the runs' seed (initialisation, batch order, split)")
    ap.add_argument("--samples", type=int, default=None, help="images each recipe samples (default: the config's)")
    ap.add_argument("--reference", type=int, default=0,
                    help="also score against this many fresh phantoms (generator seed 987654, prepared like the "
                    "data; 0: only the run's held-out images)")
    args = ap.parse_args(argv)
    names = args.recipes or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        ap.error(f"unknown recipe(s) {unknown}; known: {', '.join(RECIPES)}")
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / "recipes.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    common = [f"data.path={args.work / 'raw'}", "train.mixed_precision=no", f"train.num_threads={args.threads}",
              f"sample.num_threads={args.threads}", f"seed={args.seed}",
              *([f"sample.num_images={args.samples}"] if args.samples else []), *args.set]
    reference = reference_images(args.work, args.reference, args.config, env) if args.reference else None
    for recipe in names:
        name = recipe if args.seed == 0 else f"{recipe}@seed{args.seed}"
        run = args.work / name
        sets = [x for kv in [*common, *RECIPES[recipe]] for x in ("--set", kv)]
        base = ["--config", args.config, "--run-dir", str(run), *sets]
        if name not in results:
            cspine("demo-data", *base, env=env)
            cspine("prepare", *base, env=env)
            train_s = cspine("train", *base, env=env)
            cspine("sample", *base, env=env)
            results[name] = {"overrides": RECIPES[recipe], "seed": args.seed, "train_s": train_s,
                             **score(run, reference)}
            out.write_text(json.dumps(results, indent=2))
        print(f"{name}: {results[name]}", flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
