"""Releasing a conditional model's samples: typed label columns in the shards, the cards, the custom pipeline.

The run is tests/fakerun.py's, with model/pipeline replaced by a randomly initialised tiny conditional pipeline
(training.pipeline_export) and samples.parquet given hand-written curvature classes and keypoints (two images
unconditional), re-recorded, audited by the real `cspine audit` and packaged by the real `cspine package`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cspine.cli import main as cspine
from cspine.stages import load_config
from tests.fakerun import write_records
from tests.release.conftest import audit
from cspine.labels import KEYPOINT_LABELS


def conditional_pipeline(run) -> dict:
    import torch
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel

    from training.pipeline_export import export_conditional_pipeline
    from cspine.generation.shape_model import fit_shape_model

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=64, in_channels=3, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, num_class_embeds=6)
    rng = np.random.default_rng(0)
    pts = rng.uniform(10, 50, (1, 23, 2)) + rng.normal(0, 1, (50, 23, 2))
    shape = fit_shape_model(np.arange(50) % 5 + 1, pts, 64, 3, 5)
    export_conditional_pipeline(EMAModel(unet.parameters()), unet, DDPMScheduler(num_train_timesteps=1000),
                                run.pipeline, shape, 1.0)
    return shape


@pytest.fixture()
def conditional_run(fake_run):
    from cspine.generation.shape_model import keypoints_json, sample_layout

    run = fake_run
    shape = conditional_pipeline(run)
    s = pd.read_parquet(run.samples_table)
    curv = [None if j in (0, 1) else j % 5 + 1 for j in range(len(s))]
    s["curvature"] = pd.array(curv, dtype="Int64")
    s["keypoints"] = [None if k is None else keypoints_json(sample_layout(shape, 0, k, j, 64)) for j, k in enumerate(curv)]
    s.to_parquet(run.samples_table, index=False)
    # what `cspine sample` keeps of its sampler (here the stochastic DPM-Solver++ with Karras steps)
    from cspine.generation.sampling import make_scheduler

    run.sampler_config.parent.mkdir(parents=True, exist_ok=True)
    run.sampler_config.write_text(make_scheduler("dpmsolver++-sde-karras", run).to_json_string())
    write_records(load_config(run.config), run, ("train", "sample"))
    assert audit(run, "--exclude-flagged") == 0
    assert cspine(["package", "--config", str(run.config)]) == 0
    return run


def test_label_columns_load_typed_with_datasets(conditional_run):
    import datasets

    run = conditional_run
    ds = datasets.load_dataset(str(run.release_dataset), split="train")
    cl = ds.features["curvature"]
    assert isinstance(cl, datasets.ClassLabel)
    assert cl.names == ["unconditional", "lordotic", "straight", "sigmoid", "reverse sigmoid", "kyphotic"]
    kp_feature = ds.features["keypoints"]
    assert isinstance(kp_feature, datasets.List)
    assert kp_feature.feature == {"label": datasets.Value("string"), "x": datasets.Value("float32"),
                                  "y": datasets.Value("float32")}
    samples = pd.read_parquet(run.samples_table).set_index("image_id")
    assert len(ds) > 0
    for row in ds:
        want = samples.loc[row["image_id"]]
        if pd.isna(want["curvature"]):
            assert row["curvature"] == 0 and row["keypoints"] == []
            continue
        assert row["curvature"] == int(want["curvature"])
        kp = json.loads(want["keypoints"])
        assert [p["label"] for p in row["keypoints"]] == list(KEYPOINT_LABELS)
        np.testing.assert_allclose([[p["x"], p["y"]] for p in row["keypoints"]], list(kp.values()), atol=1e-3)


def test_cards_document_labels_and_custom_pipeline(conditional_run):
    run = conditional_run
    ds_card = (run.release_dataset / "README.md").read_text()
    assert "`ClassLabel`" in ds_card and "1 = lordotic, 2 = straight" in ds_card
    assert ", ".join(KEYPOINT_LABELS) in ds_card.replace("\n", " ")
    assert "class_label" in ds_card  # the YAML header declares the feature type for the Hub viewer
    model_card = (run.release_model / "README.md").read_text()
    assert "trust_remote_code=True" in model_card and "curvature=3" in model_card
    assert 'DPMSolverMultistepScheduler.from_pretrained("owner/synthetic-cspine-ddpm", subfolder="sampler")' in model_card
    assert (run.release_model / "pipeline.py").is_file()


def test_released_pipeline_loads_offline_with_stock_diffusers(conditional_run, tmp_path):
    """What the model card shows, run in a clean process with the Hub offline: both diffusers spellings.

    The process stands for a fresh venv with stock diffusers: it refuses to import any of this project's
    packages (they are installed in the test venv), so the released folder must carry all its code."""
    code = (
        "import sys, importlib.abc\n"
        "class NoProject(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'cspine', 'training', 'privacy', 'evaluation', 'release', 'reader_study',"
        " 'dataset_card'}:\n"
        "            raise ImportError('project package imported by the released pipeline: ' + name)\n"
        "sys.meta_path.insert(0, NoProject())\n"
        "import torch\nfrom diffusers import DiffusionPipeline\n"
        "a = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "b = DiffusionPipeline.from_pretrained(sys.argv[1], custom_pipeline=sys.argv[1], trust_remote_code=True)\n"
        "out = a(curvature=2, num_images=2, num_inference_steps=2, guidance_scale=1.5, output_type='np',\n"
        "        generator=torch.Generator().manual_seed(0))\n"
        "from diffusers import DPMSolverMultistepScheduler\n"  # the card's line for the release's own sampler
        "b.scheduler = DPMSolverMultistepScheduler.from_pretrained(sys.argv[1], subfolder='sampler')\n"
        "assert b.scheduler.config.use_karras_sigmas and b.scheduler.config.algorithm_type == 'sde-dpmsolver++'\n"
        "assert b(curvature=1, num_images=1, num_inference_steps=4, output_type='np',\n"
        "         generator=torch.Generator().manual_seed(0)).images.shape == (1, 64, 64, 1)\n"
        "print(type(a).__name__, type(b).__name__, out.images.shape, sorted(out.keypoints[0])[0], out.curvature)\n"
    )
    env = {"HF_HOME": str(tmp_path / "hf-home"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code, str(conditional_run.release_model)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == \
        "CSpineConditionalPipeline CSpineConditionalPipeline (2, 64, 64, 1) C2 bottom left [2, 2]"
