"""The study's tone policy on real stage outputs: `cspine demo-data` + `cspine prepare` make the real images
(phantom radiographs with their shutters, markers and noise), and the synthetic stand-ins are other
prepared images with the tone flaw the demo's generator has (lifted, flattened darks; measured in the
README). Served as they are, a histogram statistic picks the real image and the build is refused; served
with the common tone (the default), every file holds the same histogram, those rules score chance exactly,
and each served image keeps its source's anatomy (its pixel order)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as sps

from cspine.cli import main as cspine
from cspine.images import to_unit, write_png
from cspine.rundir import RunDir
from reader_study.assets import resize_unit
from reader_study.build import StudyPaths, build_study
from tests.fakerun import REPO, write_records
from tests.reader_study.conftest import study_config

HISTOGRAM_STATISTICS = ("black_share", "saturated_share", "mean", "std", "skewness", "entropy")


@pytest.fixture(scope="module")
def toned_run(tmp_path_factory) -> RunDir:
    """Real prepared phantoms as the real images; prepared training images with lifted darks as samples."""
    root = tmp_path_factory.mktemp("tone-chain")
    args = ["--config", str(REPO / "configs" / "demo.yaml"), "--run-dir", str(root / "run"),
            "--set", f"data.path={root / 'raw'}", "--set", "data.phantom.count=80", "--set", "data.phantom.cases=80",
            "--set", "data.holdout_fraction=0.4", "--workers", "1", "--no-progress"]
    assert cspine(["demo-data", *args]) == 0
    assert cspine(["prepare", *args]) == 0
    run = RunDir(root / "run")
    index = pd.read_parquet(run.index)
    pixels = np.load(run.pixels)
    train = index[index["split"] == "train"]
    run.sample_images.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, row in enumerate(train.itertuples()):
        lifted = 0.07 + 0.88 * to_unit(pixels[row.cache_row]) ** 0.8  # the generator's darks: lifted, compressed
        image_id = f"final-{k:06d}"
        write_png(run.samples / f"images/{image_id}.png", np.rint(lifted * 65535).astype(np.uint16))
        rows.append(dict(image_id=image_id, file=f"images/{image_id}.png", seed=0, scheduler="ddim", steps=25,
                         checkpoint="final", curvature=None, keypoints=None))
    pd.DataFrame(rows).to_parquet(run.samples_table, index=False)
    write_records(study_config(run), run, ("sample",))
    return run


def _table(run):
    return json.loads((StudyPaths(run).root / "blinding.json").read_text())


def test_tone_alone_is_a_tell_when_served_as_is(toned_run, capsys):
    argv = ["study", "build", "--config", str(toned_run.config), "--set", "study.trials=8", "--set", "study.image_size=96",
            "--set", "study.raters=3", "--tone", "as_is"]
    assert cspine(argv) == 1
    err = capsys.readouterr().err
    assert "tell" in err and "Traceback" not in err
    rep = _table(toned_run)
    assert rep["tone"]["policy"] == "as_is"
    assert {r["statistic"] for r in rep["rules"] if r["tell"]} & set(HISTOGRAM_STATISTICS)


def test_common_tone_serves_one_histogram_and_keeps_each_images_order(toned_run):
    cfg = study_config(toned_run, trials=8)
    build_study(cfg, toned_run, force=True)
    paths = StudyPaths(toned_run)
    rep = _table(toned_run)
    assert rep["tone"]["policy"] == "match" and rep["tells"] == []
    for r in rep["rules"]:
        if r["statistic"] in HISTOGRAM_STATISTICS:
            assert r["hit_rate"] == pytest.approx(1 / 4) and not r["tell"]
    # every served file holds exactly the same multiset of 8-bit values
    served = {p.stem: np.asarray(Image.open(io.BytesIO(p.read_bytes()))) for p in paths.assets.glob("*.png")}
    hists = {np.bincount(a.ravel(), minlength=256).tobytes() for a in served.values()}
    assert len(served) == 32 and len(hists) == 1
    # and each keeps its source's anatomy: the served pixels are in the order of the source's pixels
    key = json.loads(paths.answer_key.read_text())
    index = pd.read_parquet(toned_run.index).set_index("image_id")
    pixels = np.load(toned_run.pixels)
    for t in key["trials"]:
        real = t["alternatives"][t["real_position"]]
        source = resize_unit(pixels[int(index.loc[real["image_id"], "cache_row"])], cfg.study.image_size)
        rho = sps.spearmanr(source.ravel(), served[real["asset"]].ravel()).statistic
        assert rho > 0.99, (real["image_id"], rho)
