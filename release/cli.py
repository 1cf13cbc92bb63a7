"""The `cspine` command: one subcommand per pipeline stage.

Each stage package registers its own subcommands (``training.cli``, ``privacy.cli``, ``evaluation.cli``,
``reader_study.cli``, ``release.commands``); this module only assembles them, so ``cspine STAGE --help``
leads straight to the module that does the work. Heavy imports (torch, diffusers) happen inside the
command functions, so ``cspine --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cspine.config import ConfigError

STAGES = """\
stages, in pipeline order (../shared/DESIGN.md):
  demo-data   write the procedural phantom radiographs (CSXA layout) that the demo runs on
  prepare     ingest radiographs (DICOM, PNG/JPEG, CSXA) into data/: index, pixel cache, split
  train       train the DDPM (diffusers + accelerate) into model/
  sample      generate synthetic images into samples/
  audit       privacy audit: nearest training neighbours, calibrated flags, the release gate
  evaluate    quality metrics: FID/KID, precision/recall, diversity, sampler speed-quality
  study       expert reader study: build trials, serve the rater app, analyze answers
  package     Parquet shards, dataset card, model card into release/
  verify      check a release folder against its manifest
  publish     upload release/ to the Hugging Face Hub (or a local hub folder)
  release     run every stage above in order, resuming what is done (what `make release` runs)
"""


def build_parser() -> argparse.ArgumentParser:
    from evaluation import cli as evaluation_cli
    from privacy import cli as privacy_cli
    from reader_study import cli as study_cli
    from release import commands as release_cli
    from training import cli as training_cli

    parser = argparse.ArgumentParser(
        prog="cspine",
        description="synthetic-cspine: from radiographs you may not share to an audited synthetic dataset you may share.",
        epilog=STAGES + "\nRun `cspine STAGE --help` for a stage's options. Every stage takes --config (default configs/demo.yaml).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="STAGE")
    training_cli.register(sub)
    privacy_cli.register(sub)
    evaluation_cli.register(sub)
    study_cli.register(sub)
    release_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"cspine: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cspine: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
