"""The model commands of `cspine`: ``train`` (data/ -> model/) and ``sample`` (model/ -> samples/).

Both run unchanged under ``accelerate launch -m cspine train|sample ...`` for several GPUs (the stage table
writes their records from the main process). Heavy imports happen inside the functions.
"""

from __future__ import annotations

import argparse

from cspine.command import Command

TRAIN_HELP = """\
Train the DDPM on the pixel cache in data/ (train split only) and write model/:
checkpoints/step-N/ (resumable), loss.csv, grids/step-N.png (EMA samples) and pipeline/ (the EMA
DDPMPipeline that `sample` and `package` use). diffusers UNet2DModel + DDPMScheduler, AdamW with warm-up,
gradient clipping, EMA with warm-up, accelerate mixed precision and gradient accumulation (config
section `train`, model shape in `model`).

Re-running resumes from the newest checkpoint (weights, EMA, optimizer, LR schedule, RNG, step), also to a
larger train.max_steps; when data/ changed since training, or a model key changed, model/ is cleared and
training starts over (model/record.json says why). For several GPUs:
  accelerate launch -m cspine train -c configs/csxa-256.yaml
"""

SAMPLE_HELP = """\
Generate sample.num_images synthetic images per checkpoint in sample.checkpoints ("final" and/or
"step-N") into samples/images/{checkpoint}-{i:06d}.png (16-bit gray PNG, or 8-bit with
sample.bit_depth: 8) and samples/samples.parquet (image_id, file, seed, scheduler, steps, checkpoint).
Image i depends only on (seed, i). Work is done in shards of sample.shard_size; a killed run resumes at
the first unfinished shard and gives byte-identical images. samples/record.json holds the sha256 of the
weights that made them: after a retrain the samples are redone. Under `accelerate launch -m cspine
sample` the shards are split across processes with the same result.
"""


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-resume", dest="restart", action="store_true",
                   help="clear model/ (checkpoints, grids, loss log, pipeline) and train from scratch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _train_run(cfg, run, args):
    from training.train import train

    return train(cfg, run, resume=True, progress=not args.no_progress)


def _train_summary(result, cfg, run) -> str:
    verb = "already trained" if result.skipped else "trained"
    return f"train: {verb} to step {result.step}: {run.pipeline}"


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _sample_run(cfg, run, args):
    from training.sample import sample

    return sample(cfg, run, progress=not args.no_progress)


def _sample_summary(table, cfg, run) -> str:
    return f"sample: {len(table)} samples: {run.samples_table}"


TRAIN = Command(TRAIN_HELP, _train_run, _train_summary, _train_arguments)
SAMPLE = Command(SAMPLE_HELP, _sample_run, _sample_summary, _sample_arguments)
