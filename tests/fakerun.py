"""A small, fast run directory that follows the contract of cspine.rundir, for tests of the later stages.

It is *not* made by the real stages: data/ holds simple blob images (a column of bright rounded blocks
on a soft background, random per image) and model/pipeline is a randomly initialised tiny DDPMPipeline
(so loaders and samplers run, but its samples are noise). samples/ holds more blob images, drawn with
other seeds, standing in for synthetic images. Tests that need the real chain use the real stages.
It carries the provenance records of prepare, train and sample (with the inputs and outputs as they are),
so the real later stages accept it when run with its own config (``--config RUN/config.yaml``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cspine import atomic
from cspine.config import dump_config
from cspine.stages import load_config
from cspine.images import write_png
from cspine.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]


def blob_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One uint16 image: soft background, a curved column of 6 bright blocks, noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = 0.15 + 0.1 * rng.random() + 0.1 * xx
    bend = rng.uniform(-0.15, 0.15)
    for k in range(6):
        cy = 0.15 + k * 0.13
        cx = 0.5 + bend * np.sin(np.pi * cy) + rng.normal(0, 0.02)
        h, w = 0.045 + rng.normal(0, 0.005), 0.09 + rng.normal(0, 0.01)
        d = np.maximum(np.abs(yy - cy) / h, np.abs(xx - cx) / w)
        img = img + (0.45 + 0.1 * rng.random()) / (1 + np.exp((d - 1) * 12))
    img = img + rng.normal(0, 0.02, img.shape)
    return np.rint(np.clip(img, 0, 1) * 65535).astype(np.uint16)


def make_fake_run(
    root: Path,
    n_train: int = 40,
    n_holdout: int = 12,
    n_samples: int = 24,
    size: int = 64,
    seed: int = 0,
    with_model: bool = True,
) -> RunDir:
    """Write a contract-following run directory under ``root`` and return its RunDir."""
    run = RunDir(root)
    cfg = load_config(
        REPO / "configs" / "demo.yaml",
        {"run_dir": str(root), "data.resolution": size, "sample.num_images": n_samples},
    )
    run.root.mkdir(parents=True, exist_ok=True)
    atomic.write_text(run.config, dump_config(cfg))

    rng = np.random.default_rng(seed)
    n = n_train + n_holdout
    pixels = np.stack([blob_image(rng, size) for _ in range(n)])
    run.data.mkdir(parents=True, exist_ok=True)
    np.save(run.pixels, pixels)
    rows = []
    for i in range(n):
        split = "train" if i < n_train else "holdout"
        rows.append(
            dict(
                image_id=f"{1000 + i:04d}_0",
                source=f"fake/{1000 + i:04d}_0.png",
                sha256=f"{i:064x}",
                split=split,
                case_id=f"{1000 + i:04d}",
                labels=json.dumps({"curvature": int(i % 5) + 1}),
                width=size,
                height=size,
                cache_row=i,
            )
        )
    pd.DataFrame(rows).to_parquet(run.index, index=False)
    atomic.write_json(run.ingest_report, {"skipped": [], "duplicates": [], "counts": {"ok": n}})

    run.sample_images.mkdir(parents=True, exist_ok=True)
    srows = []
    srng = np.random.default_rng(seed + 1000)
    for i in range(n_samples):
        image_id = f"final-{i:06d}"
        file = f"images/{image_id}.png"
        write_png(run.samples / file, blob_image(srng, size))
        srows.append(dict(image_id=image_id, file=file, seed=cfg.seed, scheduler="ddim", steps=50, checkpoint="final",
                          curvature=None, keypoints=None))
    pd.DataFrame(srows).to_parquet(run.samples_table, index=False)

    if with_model:
        from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

        unet = UNet2DModel(
            sample_size=size, in_channels=1, out_channels=1, layers_per_block=1,
            block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
        )
        DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(run.pipeline)
    write_records(cfg, run, ("prepare", "train", "sample"))  # without a model: train recorded as having made none
    return run


def write_records(cfg, run: RunDir, names) -> None:
    """Provenance records for the stages ``names`` of a hand-made run, as the stage table would write them."""
    from cspine import provenance
    from cspine.stages import by_name

    for name in names:
        stage = by_name(name)
        provenance.write_record(stage.folder(cfg, run), name, stage.config_of(cfg), stage.inputs(cfg, run),
                                stage.outputs(cfg, run), extra={"made_by": "tests/fakerun.py"})
