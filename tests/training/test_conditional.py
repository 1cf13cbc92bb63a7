"""Curvature- and layout-conditional generation (cspine/generation/: hub_pipeline.py, shape_model.py, sampling.py; training/sample.py).

A tiny conditional U-Net (32 px) trains a few steps on tests/fakerun.py's blob data, to which hand-written
keypoints are added (a column of six vertebral bodies per image, jittered, in the 32 px cache frame). What is
checked does not depend on a well-trained model: which classes and layouts each sample gets, that image
(seed, k, i) does not depend on batch size or on how many other images are drawn, that guidance 1 is the plain
conditional model, and that the exported custom pipeline loads with stock diffusers in a clean process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from cspine.rundir import SAMPLES_COLUMNS, RunDir
from tests.fakerun import make_fake_run
from tests.training.test_sample import BATCH_TOLERANCE
from tests.training.test_train import TINY, tiny_cfg
from cspine.labels import KEYPOINT_LABELS

CONDITIONAL = {**TINY, "model.condition.curvature": True, "model.condition.keypoints": True,
               "model.condition.drop_prob": 0.15, "model.condition.min_class_images": 4,
               "train.max_steps": 3, "train.checkpoint_every": 3, "train.mixed_precision": "no",
               "sample.steps": 3, "sample.scheduler": "ddpm", "sample.batch_size": 3, "sample.shard_size": 4,
               "sample.num_images": 10, "train.grid_images": 6, "train.grid_steps": 3}


def spine_keypoints(rng: np.random.Generator, size: int) -> dict[str, list[float]]:
    """Hand-made 23 CSXA keypoints: C2 centroid and bottom corners, then C3-C7 four corners, top to bottom."""
    s = size / 64
    x0, y0, shift = 32 + rng.normal(0, 1.5), 8 + rng.normal(0, 1), rng.normal(0, 1.5)
    pts = {"C2 centroid": [x0, y0], "C2 bottom left": [x0 - 5, y0 + 4], "C2 bottom right": [x0 + 5, y0 + 4]}
    for n, v in enumerate(range(3, 8)):
        top = y0 + 6 + 8 * n
        cx = x0 + shift * (n + 1) / 5
        pts[f"C{v} top left"], pts[f"C{v} top right"] = [cx - 5, top], [cx + 5, top]
        pts[f"C{v} bottom left"], pts[f"C{v} bottom right"] = [cx - 5, top + 5], [cx + 5, top + 5]
    return {k: [round(a * s, 3), round(b * s, 3)] for k, (a, b) in pts.items()}


def labelled_fake_run(root, size: int = 32) -> RunDir:
    """tests/fakerun.py's run with curvature classes 1-5 (its own) plus keypoints on all but every 7th image,
    and no class on every 11th (those must train as the null class)."""
    run = make_fake_run(root, size=size, with_model=False)
    idx = pd.read_parquet(run.index)
    rng = np.random.default_rng(7)
    labels = []
    for j, raw in enumerate(idx["labels"]):
        lab = json.loads(raw)
        if j % 7 != 3:
            lab["keypoints"] = spine_keypoints(rng, size)
        if j % 11 == 5:
            lab.pop("curvature")
        labels.append(json.dumps(lab))
    idx["labels"] = labels
    idx.to_parquet(run.index, index=False)
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from training.train import train

    root = tmp_path_factory.mktemp("conditional") / "run"
    run = labelled_fake_run(root)
    result = train(tiny_cfg(root, **CONDITIONAL), run, progress=False)
    assert result.step == 3 and not result.skipped
    return run


def load(run: RunDir):
    from cspine.generation.sampling import load_unet, make_scheduler
    from cspine.generation.shape_model import read_shape_model

    return load_unet(run), make_scheduler("ddpm", run), read_shape_model(run.model / "shape_model.json")


# -- pure parts --------------------------------------------------------------------------------------------

def test_class_counts():
    from cspine.generation.shape_model import class_counts

    train = {"1": 30, "2": 10, "3": 0, "4": 0, "5": 0}
    assert class_counts("train", 8, train) == {1: 6, 2: 2}
    assert class_counts("balanced", 12, train) == {1: 3, 2: 3, 3: 2, 4: 2, 5: 2}
    assert class_counts({3: 4, 5: 0}, 99, train) == {3: 4}
    assert class_counts("unconditional", 5, train) == {None: 5}
    assert class_counts("train", 5, None) == {None: 5}  # an unconditional model


def test_render_layout_marks_points_and_bodies():
    from cspine.generation.hub_pipeline import render_layout

    pts = torch.tensor([[[10.0, 10.0], [8.0, 14.0], [12.0, 14.0]] + [[20.0, 20.0]] * 20,
                        [[float("nan"), 1.0]] * 23])
    maps = render_layout(pts, 32, 1.0)
    assert maps.shape == (2, 2, 32, 32)
    assert maps[0, 0, 10, 10] == pytest.approx(1.0) and maps[0, 0, 0, 31] < 1e-6
    assert maps[0, 1, 12, 10] == 1.0 and maps[0, 1, 5, 10] == 0.0  # inside / outside the C2 triangle
    assert maps[1].abs().sum() == 0  # no keypoints: an empty layout


def test_shape_model_fits_and_pools_small_classes():
    from cspine.generation.shape_model import fit_shape_model, sample_layout

    rng = np.random.default_rng(0)
    base = np.array(list(spine_keypoints(rng, 64).values()))
    pts = base[None] + rng.normal(0, 1.0, (40, 23, 2))
    classes = np.array([1] * 30 + [2] * 3 + [0] * 7)
    model = fit_shape_model(classes, pts, 64, max_modes=3, min_class_images=10)
    one = model["classes"]["1"]
    assert not one["pooled"] and model["classes"]["2"]["pooled"]  # 3 images: never described on their own
    np.testing.assert_allclose(one["mean"], pts[:30].reshape(30, -1).mean(0), atol=1e-3)
    assert 1 <= len(one["stddev"]) <= 3
    assert model["class_counts"] == {"1": 30, "2": 3, "3": 0, "4": 0, "5": 0}
    a = sample_layout(model, 0, 1, 5, 64)
    np.testing.assert_array_equal(a, sample_layout(model, 0, 1, 5, 64))  # a function of (seed, k, i)
    assert not np.allclose(a, sample_layout(model, 0, 1, 6, 64))
    np.testing.assert_allclose(sample_layout(model, 0, 1, 5, 128), (a + 0.5) * 2 - 0.5)  # another resolution


def test_guided_noise_combines_branches():
    from cspine.generation.hub_pipeline import guided_noise

    class Fake:  # eps = class label + mean of the maps, so each branch is recognisable
        def __call__(self, x, t, class_labels=None):
            out = class_labels.float()[:, None, None, None] + x[:, 1:].mean(dim=(1, 2, 3), keepdim=True)
            return type("O", (), {"sample": out.expand(-1, 1, *x.shape[2:])})()

    x = torch.zeros(2, 1, 4, 4)
    labels, maps = torch.tensor([3, 5]), torch.ones(2, 2, 4, 4)
    cond = guided_noise(Fake(), x, 0, labels, maps, 1.0)
    assert torch.equal(cond[:, 0, 0, 0], torch.tensor([4.0, 6.0]))
    assert torch.equal(guided_noise(Fake(), x, 0, labels, maps, 0.0)[:, 0, 0, 0], torch.zeros(2))  # null, no map
    assert torch.allclose(guided_noise(Fake(), x, 0, labels, maps, 2.5)[:, 0, 0, 0], 2.5 * torch.tensor([4.0, 6.0]))


# -- a trained tiny model ---------------------------------------------------------------------------------------

def test_training_writes_conditional_model(trained):
    from cspine.generation.hub_pipeline import MAP_CHANNELS
    from training.pipeline_export import is_conditional_pipeline

    unet, _, shape = load(trained)
    assert unet.config.num_class_embeds == 6 and unet.config.in_channels == 1 + MAP_CHANNELS
    assert is_conditional_pipeline(trained.pipeline) and (trained.pipeline / "pipeline.py").is_file()
    idx = pd.read_parquet(trained.index)
    train_labels = [json.loads(v) for v in idx[idx["split"] == "train"]["labels"]]
    for k in range(1, 6):
        assert shape["class_counts"][str(k)] == sum(lab.get("curvature") == k for lab in train_labels)
    assert set(shape["classes"]) == {"1", "2", "3", "4", "5"} and shape["labels"] == list(KEYPOINT_LABELS)


def test_training_grid_is_drawn_conditionally(trained):
    """The last step's grid (model/grids/step-3.png) shows the shape model's classes in turn, each with a layout
    of ``sample_layout``: it equals a conditional draw of the exported EMA U-Net and not an unconditional one."""
    from PIL import Image

    from training.grids import grid_conditions, grid_image
    from cspine.generation.sampling import generate
    from cspine.generation.shape_model import sample_layout

    unet, sched, shape = load(trained)
    n, steps = CONDITIONAL["train.grid_images"], CONDITIONAL["train.grid_steps"]
    cond = grid_conditions(shape, n, 0, 32)
    ks = sorted(int(k) for k in shape["classes"])
    assert cond["classes"] == [ks[i % len(ks)] for i in range(n)] and len(set(cond["classes"])) == min(n, len(ks))
    for i, (k, lay) in enumerate(zip(cond["classes"], cond["layouts"])):
        assert np.array_equal(lay, sample_layout(shape, 0, k, i, 32))
    written = np.asarray(Image.open(trained.grids / "step-3.png"), dtype=np.int16)
    conditional = grid_image(generate(unet, sched, range(n), 0, steps, progress=False, **cond)).astype(np.int16)
    unconditional = grid_image(generate(unet, sched, range(n), 0, steps, progress=False)).astype(np.int16)
    assert np.abs(written - conditional).max() <= 1  # batch rounding only (BATCH_TOLERANCE)
    assert np.abs(written - unconditional).mean() > 2


def test_batch_conditions_drop_class_and_layout_together(trained):
    from cspine.generation.hub_pipeline import render_layout
    from training.train import Trainer, batch_conditions
    from training.train_data import condition_drop, load_train_conditions

    cfg = tiny_cfg(trained.root, **CONDITIONAL)
    classes, points = load_train_conditions(trained)
    assert (classes == 0).any() and torch.isnan(points).any()  # unlabelled rows are there, as null
    acc = type("OneProcess", (), {"process_index": 0})()
    tr = Trainer(cfg, acc, None, None, None, None, None, torch.zeros(len(classes), 1, 32, 32), None,
                 classes=classes, points=points)
    rows = np.arange(len(classes))
    micro = next(m for m in range(50) if condition_drop(cfg.seed, m, 0, len(rows), 0.15).any())
    drop = condition_drop(cfg.seed, micro, 0, len(rows), 0.15)
    x, labels = batch_conditions(tr, rows, micro, torch.zeros(len(rows), 1, 32, 32))
    assert x.shape == (len(rows), 3, 32, 32)
    assert torch.equal(labels[drop], torch.zeros(int(drop.sum()), dtype=torch.long))
    assert torch.equal(labels[~drop], classes[~drop])
    empty = x[:, 1:].flatten(1).abs().sum(1) == 0
    has_kp = ~torch.isnan(points).any(dim=(1, 2))
    assert torch.equal(empty, drop | ~has_kp)
    # the once-rendered cache gives what rendering per micro-batch gives
    cached = Trainer(cfg, acc, None, None, None, None, None, torch.zeros(len(classes), 1, 32, 32), None,
                     classes=classes, points=points, maps=render_layout(points, 32, 0.5))
    x2, labels2 = batch_conditions(cached, rows, micro, torch.zeros(len(rows), 1, 32, 32))
    assert torch.equal(labels2, labels) and torch.allclose(x2, x)


def test_image_depends_on_seed_class_index_only(trained):
    from cspine.generation.sampling import generate
    from cspine.generation.shape_model import sample_layout

    unet, sched, shape = load(trained)
    items = [(1, 0), (3, 0), (3, 1), (5, 4), (None, 2)]
    lay = [None if k is None else sample_layout(shape, 0, k, i, 32) for k, i in items]
    kw = dict(classes=[k for k, _ in items], layouts=lay, progress=False, guidance_scale=2.0)
    one = generate(unet, sched, [i for _, i in items], 0, 3, batch_size=1, **kw)
    many = generate(unet, sched, [i for _, i in items], 0, 3, batch_size=5, **kw)
    assert np.abs(one - many).max() < BATCH_TOLERANCE
    # class 3 image 0 alone equals it among others, and differs from class 1 image 0
    alone = generate(unet, sched, [0], 0, 3, classes=[3], layouts=[lay[1]], progress=False, guidance_scale=2.0)
    assert np.abs(alone[0] - many[1]).max() < BATCH_TOLERANCE
    assert np.abs(many[0] - many[1]).max() > 0.01


def test_guidance_one_is_the_plain_conditional_model(trained):
    from diffusers.utils.torch_utils import randn_tensor

    from cspine.generation.hub_pipeline import render_layout
    from cspine.generation.sampling import generate, index_generators
    from cspine.generation.shape_model import sample_layout

    unet, sched, shape = load(trained)
    lay = sample_layout(shape, 0, 2, 1, 32)
    got = generate(unet, sched, [1], 0, 3, classes=[2], layouts=[lay], progress=False, guidance_scale=1.0)
    # reference: a plain loop calling the U-Net with the class and the concatenated map
    import copy

    s = copy.deepcopy(sched)
    s.set_timesteps(3)
    gens = index_generators(0, [1], [2])
    x = randn_tensor((1, 1, 32, 32), generator=gens, dtype=torch.float32)
    maps = render_layout(torch.as_tensor(lay, dtype=torch.float32)[None], 32, shape["map_sigma"] * 32 / 64)
    with torch.no_grad():
        for t in s.timesteps:
            eps = unet(torch.cat([x, maps], 1), t, class_labels=torch.tensor([2])).sample
            x = s.step(eps, t, x, generator=gens).prev_sample
    np.testing.assert_allclose(got[0], (x[0, 0] / 2 + 0.5).clamp(0, 1).numpy(), atol=1e-6)
    guided = generate(unet, sched, [1], 0, 3, classes=[2], layouts=[lay], progress=False, guidance_scale=3.0)
    assert np.abs(guided - got).max() > 1e-4


def test_sample_stage_draws_per_class_with_keypoints(trained, tmp_path):
    import shutil

    from training.sample import sample

    run = RunDir(tmp_path / "run")
    shutil.copytree(trained.root, run.root)
    shutil.rmtree(run.samples, ignore_errors=True)
    cfg = tiny_cfg(run.root, **CONDITIONAL, **{"sample.per_class": {2: 3, 4: 2}})
    table = sample(cfg, run, progress=False)
    assert tuple(table.columns) == SAMPLES_COLUMNS
    assert list(table["image_id"]) == ["final-c2-000000", "final-c2-000001", "final-c2-000002",
                                       "final-c4-000000", "final-c4-000001"]
    assert list(table["curvature"]) == [2, 2, 2, 4, 4]
    assert json.loads(run.sampler_config.read_text())["_class_name"] == "DDPMScheduler"  # kept for the release
    back = pd.read_parquet(run.samples_table)
    assert str(back["curvature"].dtype) == "Int64"
    for raw in back["keypoints"]:
        kp = json.loads(raw)
        assert list(kp) == list(KEYPOINT_LABELS) and all(len(v) == 2 for v in kp.values())
    from cspine.images import read_gray

    first = read_gray(run.samples / table["file"][3]).astype(np.float64) / 65535

    # more images of class 4: the images already drawn do not change (up to batched rounding)
    shutil.rmtree(run.samples)
    cfg2 = tiny_cfg(run.root, **CONDITIONAL, **{"sample.per_class": {4: 3}})
    t2 = sample(cfg2, run, progress=False)
    again = read_gray(run.samples / t2["file"][0]).astype(np.float64) / 65535
    assert np.abs(again - first).max() < BATCH_TOLERANCE
    assert list(t2["image_id"]) == ["final-c4-000000", "final-c4-000001", "final-c4-000002"]

    # the training distribution by default
    shutil.rmtree(run.samples)
    t3 = sample(tiny_cfg(run.root, **CONDITIONAL), run, progress=False)
    assert len(t3) == 10 and t3["curvature"].notna().all()


def test_per_class_option_parses_and_refuses():
    from training.cli_model import parse_per_class

    assert parse_per_class("balanced") == "balanced"
    assert parse_per_class("1=10, 3=5") == {1: 10, 3: 5}
    with pytest.raises(ValueError, match="CLASS=COUNT"):
        parse_per_class("lordotic")


def test_custom_pipeline_loads_offline_in_a_clean_process(trained, tmp_path):
    code = (
        "import sys, torch\nfrom diffusers import DiffusionPipeline\n"
        "pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "out = pipe(curvature=5, num_images=2, num_inference_steps=2, guidance_scale=2.0, output_type='np',\n"
        "           generator=torch.Generator().manual_seed(0))\n"
        "mine = pipe(curvature=1, keypoints=out.keypoints[0], num_inference_steps=2, output_type='np')\n"
        "print(type(pipe).__name__, out.images.shape, len(out.keypoints[0]), out.curvature, mine.keypoints[0] == out.keypoints[0])\n"
    )
    env = {"HF_HOME": str(tmp_path / "hf-home"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code, str(trained.pipeline)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split("\n")[-2] == "CSpineConditionalPipeline (2, 32, 32, 1) 23 [5, 5] True"


def test_sampler_curve_draws_the_released_conditions(trained, tmp_path):
    """evaluation/curves.py scores samplers on the released path: the classes, layouts, indices and guidance
    of samples.parquet and the sample record. With the release's own sampler it regenerates the released
    images (up to batched rounding); an unconditional draw of the same model does not."""
    import shutil

    from cspine.images import read_gray
    from evaluation.curves import release_conditions
    from tests.fakerun import write_records
    from training.sample import sample
    from cspine.generation.sampling import generate, load_unet, make_scheduler

    run = RunDir(tmp_path / "run")
    shutil.copytree(trained.root, run.root)
    shutil.rmtree(run.samples, ignore_errors=True)
    cfg = tiny_cfg(run.root, **CONDITIONAL, **{"sample.guidance_scale": 2.5})
    table = sample(cfg, run, progress=False)
    write_records(cfg, run, ("sample",))  # the sample stage's record, as `cspine sample` writes it
    cond = release_conditions(run, "final", 4)
    assert cond["guidance_scale"] == 2.5 and len(cond["indices"]) == 4
    picked = table.iloc[[0, 3, 6, 9]]  # spread over the table, so more than one class
    assert cond["classes"] == [int(k) for k in picked["curvature"]] and len(set(cond["classes"])) > 1
    assert np.allclose(cond["layouts"][1], np.array(list(json.loads(picked["keypoints"].iloc[1]).values())))
    unet, sched = load_unet(run), make_scheduler("ddpm", run)
    released = np.stack([read_gray(run.samples / f).astype(np.float64) / 65535 for f in picked["file"]])
    again = generate(unet, sched, cond.pop("indices"), 0, 3, batch_size=2, progress=False, **cond)
    # the layouts come back from the released keypoints, rounded to 1/1000 px, hence more than batch rounding
    assert np.abs(again - released).max() < 0.01
    plain = generate(unet, sched, range(4), 0, 3, progress=False)
    assert np.abs(plain - released).max() > 0.05
