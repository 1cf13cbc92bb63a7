"""The model subcommands of `cspine`: ``train`` (data/ -> model/) and ``sample`` (model/ -> samples/).

Both run unchanged under ``accelerate launch -m release.cli train|sample ...`` for several GPUs.
Heavy imports happen inside the command functions so ``cspine --help`` stays instant.
"""

from __future__ import annotations

import argparse

from cspine.stage import add_run_options

TRAIN_HELP = """\
Train the DDPM on the pixel cache in data/ (train split only) and write model/:
checkpoints/step-N/ (resumable), loss.csv, grids/step-N.png (EMA samples) and pipeline/ (the EMA
DDPMPipeline that `sample` and `package` use). diffusers UNet2DModel + DDPMScheduler, AdamW with warm-up,
gradient clipping, EMA with warm-up, accelerate mixed precision and gradient accumulation (config
section `train`, model shape in `model`).

Re-running resumes from the newest checkpoint (weights, EMA, optimizer, LR schedule, RNG, step) and
skips a run already trained to train.max_steps. For several GPUs:
  accelerate launch -m release.cli train -c configs/csxa-256.yaml
"""

SAMPLE_HELP = """\
Generate sample.num_images synthetic images per checkpoint in sample.checkpoints ("final" and/or
"step-N") into samples/images/{checkpoint}-{i:06d}.png (16-bit gray PNG, or 8-bit with
sample.bit_depth: 8) and samples/samples.parquet (image_id, file, seed, scheduler, steps, checkpoint).
Image i depends only on (seed, i). Work is done in shards of sample.shard_size; a killed run resumes at
the first unfinished shard and gives byte-identical images. Under `accelerate launch -m release.cli
sample` the shards are split across processes with the same result.
"""


def _train(args: argparse.Namespace) -> int:
    from cspine.stage import open_run
    from training.train import train

    cfg, run = open_run(args)
    result = train(cfg, run, resume=args.resume, progress=not args.no_progress)
    if result.skipped:
        print(f"model already trained to step {result.step}: {run.pipeline}")
    else:
        print(f"trained to step {result.step}: {run.pipeline}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from cspine.stage import open_run
    from training.sample import sample

    cfg, run = open_run(args)
    table = sample(cfg, run, progress=not args.no_progress)
    print(f"{len(table)} samples: {run.samples_table}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the DDPM (diffusers + accelerate) into model/", description=TRAIN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="resume from the newest checkpoint in model/checkpoints when there is one (default); "
                   "--no-resume deletes model/ checkpoints, grids, loss log and pipeline and starts over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("sample", help="generate synthetic images into samples/", description=SAMPLE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_sample)
