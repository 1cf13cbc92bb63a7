"""Downstream utility (evaluation.utility) on real stage outputs, and through `cspine evaluate`.

The measurement tests use the real chain's data: phantom radiographs (`cspine demo-data`) prepared by
`cspine prepare` at 32 px (400 films of 256 x 200, about 260 for training; phantom-5's pose and acquisition
variation needs that many for the small classifier to learn the curvature classes). The real training images are split in two
halves: one stays "real", the other stands in for a synthetic set. With their true labels the stand-ins
must score like real images (TSTR / TRTR near 1, interval covering 1); with shuffled labels, and as pure
noise images with real labels, they must score clearly worse. The wiring test makes the fake run
(tests/fakerun.py) conditional by hand and runs the stage.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cspine.cli import main as cspine
from evaluation.config import UtilityConfig
from evaluation.coverage import real_metadata
from evaluation.fidelity import json_ready
from evaluation.fidelity_data import real_labelled
from evaluation.utility import run_utility, tstr, utility_metrics
from tests.evaluation.conftest import make_conditional
from tests.evaluation.test_fidelity import SMALL


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def halves(phantom_run):
    run = phantom_run
    train = real_labelled(run, "train", 2000, 1)
    holdout = real_labelled(run, "holdout", 2000, 0)
    assert len(train) >= 120 and len(holdout) >= 60 and train.has_keypoints.all() and train.has_curvature.all()
    real = train.take(np.arange(0, len(train), 2))
    fake = train.take(np.arange(1, len(train), 2))  # real images the "real" arm never sees, as "synthetic"
    fake.name = "synthetic"
    meta = {"train": real_metadata(run, real.ids), "holdout": real_metadata(run, holdout.ids)}
    return real, holdout, fake, meta


UC = UtilityConfig(seeds=2, augment_seeds=1, bootstrap=300, classifier_steps=100, detector_steps=140,
                   augment_multipliers=[0, 1, 4])


def _features(s):
    """A cheap stand-in for Inception features (a fixed random projection of the pixels)."""
    proj = np.random.default_rng(0).normal(size=(s.pixels[0].size, 32))
    return (s.pixels.reshape(len(s), -1) / 65535.0) @ proj


def test_real_images_as_synthetic_score_like_real(halves, tmp_path):
    real, holdout, fake, meta = halves
    u = json_ready(utility_metrics(real, holdout, fake, UC, meta=meta, features=_features,
                                   figures=tmp_path / "figures", log=lambda s: None))
    json.dumps(u, allow_nan=False)  # strict JSON
    c, lm = u["tstr"]["curvature"], u["tstr"]["landmarks"]
    assert c["n_train"] == min(len(real), len(fake)) and len(c["tstr"]["balanced_accuracy"]["per_seed"]) == 2
    assert c["trtr"]["balanced_accuracy"]["mean"] > 2 * c["chance_balanced_accuracy"]  # the task is learnt
    for r in (c["ratio"]["balanced_accuracy"], c["ratio"]["macro_f1"], lm["ratio"]["mre_share"]):
        assert 0.85 <= r["ratio"] <= 1.18 and r["ci95"][0] <= 1 <= r["ci95"][1], r
    assert lm["trtr"]["mre_share"]["mean"] < 0.4  # well under a vertebral height
    aug = u["augmentation"]
    assert [p["multiplier"] for p in aug["points"]] == [0, 1, 4] and aug["n_real"] == len(fake) // 4
    assert [p["n_synthetic"] for p in aug["points"]] == [0, aug["n_real"], 4 * aug["n_real"]]
    # more (real-quality) images help a 19-image base: the 4x point beats 0x
    assert aug["points"][-1]["balanced_accuracy_change_vs_0x"]["difference"] > 0
    dist = u["measurement"]["distributions"]["by_class"]
    assert not any(row.get("differs") for row in dist.values())  # same population: no class differs after Holm
    ba = u["measurement"]["bland_altman"]
    assert ba["synthetic_trained"]["n"] == ba["real_trained"]["n"] == len(holdout)
    cov = u["coverage"]
    sh = cov["curvature"]["shares"]
    assert sum(v["n"] for v in sh["synthetic"].values()) == len(fake)
    assert all(abs(sh["synthetic"][g]["share"] - sh["train"][g]["share"]) < 0.1 for g in sh["train"])
    assert "precision" in cov["curvature"]["precision_recall"]["1"]["synthetic_vs_train"]
    assert cov["sex"]["labels"].startswith("real: recorded") and "classifier" in cov["age_band"]
    assert not any("under-covered" in s for s in u["statements"])
    assert u["figures"] == {"public": ["figures/utility_coverage.png", "figures/utility_tstr.png"],
                            "team_only": ["figures/utility_angles.png"]}
    for f in u["figures"]["public"] + u["figures"]["team_only"]:
        assert (tmp_path / f).stat().st_size > 10_000
    print(f"\nutility on phantoms (real as synthetic): balanced accuracy ratio {c['ratio']['balanced_accuracy']}, "
          f"MRE ratio {lm['ratio']['mre_share']}, angle error ratio {lm['ratio']['angle_abs_error_deg']}; {u['timings']}")


def test_shuffled_labels_and_noise_images_score_clearly_below_real(halves):
    real, holdout, fake, _ = halves
    rng = np.random.default_rng(0)
    shuffled = fake.take(np.arange(len(fake)))
    shuffled.curvature = rng.permutation(shuffled.curvature)
    shuffled.keypoints = shuffled.keypoints[rng.permutation(len(shuffled))]
    noise = fake.take(np.arange(len(fake)))
    noise.pixels = rng.integers(0, 65535, noise.pixels.shape).astype(np.uint16)
    one_seed = UC.model_copy(update={"seeds": 1})  # the interval then covers the holdout images only
    for name, bad in (("shuffled", shuffled), ("noise", noise)):
        res, _ = tstr(real, holdout, bad, one_seed, log=lambda s: None)
        c, lm = res["curvature"]["ratio"]["balanced_accuracy"], res["landmarks"]["ratio"]["mre_share"]
        f1 = res["curvature"]["ratio"]["macro_f1"]
        assert c["ratio"] < 0.6 and c["ci95"][1] < 0.8, (name, c)
        assert f1["ci95"][1] < 0.8, (name, f1)
        assert lm["ratio"] > 1.5 and lm["ci95"][0] > 1.3, (name, lm)
        print(f"\n{name}: balanced accuracy ratio {c}, MRE ratio {lm}")


def test_evaluate_writes_utility_json_for_conditional_samples_and_skips_otherwise(fake_run, capsys):
    from cspine.stages import load_config

    small = {**SMALL, "evaluate.utility.enabled": True, "evaluate.utility.seeds": 1, "evaluate.utility.augment_seeds": 1,
             "evaluate.utility.classifier_steps": 2, "evaluate.utility.detector_steps": 2,
             "evaluate.utility.bootstrap": 20, "evaluate.utility.max_train": 12}
    sets = [a for k, v in small.items() for a in ("--set", f"{k}={str(v).lower()}")]
    base = ["evaluate", "--config", str(fake_run.config), "--run-dir", str(fake_run.root), "--no-progress", *sets]
    assert cspine(base) == 0  # unconditional samples
    u = json.loads((fake_run.eval / "utility.json").read_text())
    assert "unconditional" in u["skipped"]
    assert "utility: skipped" in capsys.readouterr().out
    assert "### Downstream utility and coverage" in (fake_run.eval / "summary.md").read_text()

    make_conditional(fake_run, lambda i: {"curvature": i % 5 + 1, "sex": "MF"[i % 2], "age": 30 + i})

    assert cspine(base) == 0
    out = capsys.readouterr().out
    assert "utility: curvature balanced accuracy TSTR/TRTR" in out
    u = json.loads((fake_run.eval / "utility.json").read_text())
    assert u["counts"] == {"train": 12, "holdout": 10, "synthetic": 10}
    assert u["seeds"]["tstr"] == [0] and u["config"]["classifier_steps"] == 2
    assert u["tstr"]["curvature"]["n_train"] == 10 and u["tstr"]["landmarks"]["n_train"] == 10
    assert u["coverage"]["sex"]["n_train_classifier"] == 12 and u["coverage"]["features"].startswith("FID Inception")
    for f in u["figures"]["public"] + u["figures"]["team_only"]:
        assert (fake_run.eval / f).stat().st_size > 1000
    assert "figures/utility_coverage.png" in (fake_run.eval / "summary.md").read_text()
    text = (fake_run.eval / "summary.md").read_text()  # the dataset card embeds this section
    assert "| task | score | TSTR | TRTR | TSTR / TRTR |" in text and "(n=10)" in text
    assert "figures/utility_coverage.png" in text and "utility_angles" not in text
    # unchanged inputs: the stored utility.json is reused without training; --utility recomputes it
    logs = []
    assert run_utility(load_config(fake_run.config, small), fake_run, None, log=logs.append) == u
    assert logs == ["evaluate: utility up to date (inputs unchanged); skipping it"]
    stamp = (fake_run.eval / "utility.json").stat().st_mtime_ns
    assert cspine([*base, "--utility"]) == 0
    assert "utility: curvature balanced accuracy" in capsys.readouterr().out
    assert (fake_run.eval / "utility.json").stat().st_mtime_ns != stamp
