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
sample.bit_depth: 8) and samples/samples.parquet (image_id, file, seed, scheduler, steps, checkpoint,
curvature, keypoints). Image i depends only on (seed, i).

A curvature-conditional model (model.condition) draws, per checkpoint, images of each class 1-5
(lordotic, straight, sigmoid, reverse sigmoid, kyphotic): by default sample.num_images in the training
images' class proportions; --per-class balanced splits them evenly, --per-class unconditional draws the
null class, --per-class 1=10,3=5 draws exactly that table. Image i of class k is
{checkpoint}-c{k}-{i:06d}.png and depends only on (seed, k, i); its 23 landmarks (drawn from the run's
shape model, the layout the model was conditioned on) are in the keypoints column.
sample.guidance_scale sets classifier-free guidance (1: none). Work is done in shards of sample.shard_size; a killed run resumes at
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
    p.add_argument("--per-class", metavar="HOW",
                   help="conditional models: train | balanced | unconditional | a table like 1=10,3=5 "
                        "(images per curvature class per checkpoint; sets sample.per_class)")


def parse_per_class(text: str):
    """``--per-class`` as a sample.per_class value: a keyword or a {class: count} table."""
    text = text.strip()
    if text in ("train", "balanced", "unconditional"):
        return text
    table = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, n = part.partition("=")
        if not sep or not k.strip().isdigit() or not n.strip().isdigit():
            raise ValueError(f"--per-class {text!r}: expected train, balanced, unconditional or CLASS=COUNT,... "
                             f"(e.g. 1=10,3=5), not {part!r}")
        table[int(k)] = int(n)
    return table


def _sample_configure(cfg, args):
    """--per-class is sample config: the stage's record keeps it."""
    from pydantic import ValidationError

    from cspine.errors import StageError

    if not getattr(args, "per_class", None):
        return cfg
    try:
        value = parse_per_class(args.per_class)
        sample = type(cfg.sample).model_validate(cfg.sample.model_dump() | {"per_class": value})
    except (ValueError, ValidationError) as err:
        msg = str(err) if not isinstance(err, ValidationError) else err.errors()[0]["msg"]
        raise StageError(f"--per-class {args.per_class!r}: {msg}") from None
    return cfg.model_copy(update={"sample": sample})


def _sample_run(cfg, run, args):
    from training.sample import sample

    return sample(cfg, run, progress=not args.no_progress)


def _sample_summary(table, cfg, run) -> str:
    return f"sample: {len(table)} samples: {run.samples_table}"


TRAIN = Command(TRAIN_HELP, _train_run, _train_summary, _train_arguments)
SAMPLE = Command(SAMPLE_HELP, _sample_run, _sample_summary, _sample_arguments, _sample_configure)
