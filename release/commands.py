"""Subcommands of the release package: package, verify, publish, release (registered on the `cspine` parser)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cspine.stage import add_run_options, open_run


def _package(args: argparse.Namespace) -> int:
    from release.package import PackageError, package

    cfg, run = open_run(args)
    try:
        m = package(cfg, run, workers=args.workers)
    except PackageError as err:
        print(f"cspine package: {err}", file=sys.stderr)
        return 1
    print(f"package: {m['total_rows']} images in {sum(1 for f in m['files'] if 'rows' in f)} shard(s), "
          f"{m['total_bytes'] / 1e6:.1f} MB -> {run.release_dataset}; model -> {run.release_model}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from release.manifest import verify

    bad = verify(args.dir)
    for line in bad:
        print(f"verify: BAD {line}", file=sys.stderr)
    if bad:
        return 1
    print(f"verify: {args.dir} matches its manifest")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from release.publish import PublishError, publish

    cfg, run = open_run(args)
    try:
        results = publish(cfg, run, local=args.local)
    except PublishError as err:
        print(f"cspine publish: {err}", file=sys.stderr)
        return 1
    for r in results:
        print(f"publish: {r}")
    return 0


def _release(args: argparse.Namespace) -> int:
    from release.chain import run_release

    return run_release(args.config, args.run_dir, args.overrides)


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "package", help="Parquet shards, dataset card and model card into release/",
        description="Write the samples the privacy audit let through as Parquet shards (datasets Image feature, PNG "
        "bytes) with a manifest and dataset card into release/dataset, and the EMA pipeline with its model card into "
        "release/model. Refuses a run whose audit did not pass. Re-running keeps finished shards.", formatter_class=fmt)
    add_run_options(p)
    p.add_argument("--workers", type=int, default=None, help="PNG encoding processes (default: release.workers, 0 = every core)")
    p.set_defaults(func=_package)

    p = sub.add_parser("verify", help="check a release folder against its manifest",
                       description="Check every file of DIR against DIR/manifest.json (sha256, size, Parquet row "
                       "count) and report partial or unlisted files; exit 1 naming each bad file.")
    p.add_argument("dir", type=Path, help="a release folder, e.g. runs/demo/release/dataset")
    p.set_defaults(func=_verify)

    p = sub.add_parser(
        "publish", help="upload release/ to the Hugging Face Hub (or a local hub folder)",
        description="Create the dataset and model repos named in the config (release.dataset_repo, release.model_repo) "
        "and upload each folder in one commit. The token comes from HF_TOKEN or `hf auth login`; it is never printed. "
        "Without a token (or with --local) the release is copied to release.local_hub/OWNER/NAME, a folder that "
        "load_dataset(path) and DiffusionPipeline.from_pretrained(path) read. Publishing the same release twice "
        "changes nothing.", formatter_class=fmt)
    add_run_options(p)
    p.add_argument("--local", action="store_true", help="publish to the local hub folder even when a token is set")
    p.set_defaults(func=_publish)

    p = sub.add_parser(
        "release", help="run every stage in order, resuming what is done (what `make release` runs)",
        description="demo-data (phantom configs), prepare, train, sample, audit, evaluate (when evaluate.enabled), "
        "package, publish: each stage is run through the `cspine` CLI with the same --config and skips work that "
        "is already done, so re-running after an interruption resumes.", formatter_class=fmt)
    add_run_options(p)
    p.set_defaults(func=_release)
