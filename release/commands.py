"""The release package's commands: ``package``, ``publish`` (stages) and ``verify`` (a tool).

Thin: they call ``release.package.package``, ``release.publish.publish`` and ``release.manifest.verify``;
the stage table (cspine.stages) runs the stages under their provenance records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cspine.command import Command
from cspine.errors import GateClosed

PACKAGE_HELP = """\
Write the samples the privacy audit covered and let through as Parquet shards (datasets Image feature, the
sample PNGs byte for byte) with a manifest and dataset card into release/dataset, and the EMA pipeline with
its model card into release/model. Only allow-listed, synthetic-only figures are copied; the release is
scanned for real training and holdout images and refused on a match. Refuses (exit 1) a run whose audit did
not pass, or whose images or weights are not exactly those the audit covered (audit/record.json)."""

PUBLISH_HELP = """\
Publish release/dataset and release/model. By default (release.target: local) they are copied to
release.local_hub/OWNER/NAME, folders that load_dataset(path) and DiffusionPipeline.from_pretrained(path)
read. With release.target: hub (or --hub) they are uploaded to the Hugging Face Hub in one commit per repo,
created private unless release.private is false (or gated, release.gated); the token comes from HF_TOKEN or
`hf auth login` and is never printed. Before anything leaves, publish checks again, itself, that every image
and the weights are exactly what the audit covered. Remote files this tool did not upload are kept unless
--prune. Publishing the same release twice changes nothing."""

VERIFY_HELP = """\
Check every file of DIR against DIR/manifest.json (sha256, size, Parquet row count) and report partial or
unlisted files; exit 1 naming each bad file."""


def _package_run(cfg, run, args) -> dict:
    from release.package import package

    return package(cfg, run)


def _package_summary(m: dict, cfg, run) -> str:
    return (f"package: {m['total_rows']} images in {sum(1 for f in m['files'] if 'rows' in f)} shard(s), "
            f"{m['total_bytes'] / 1e6:.1f} MB -> {run.release_dataset}; model -> {run.release_model}")


def _publish_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", dest="target", action="store_const", const="local",
                       help="publish to the local hub folder (release.local_hub), whatever release.target says")
    where.add_argument("--hub", dest="target", action="store_const", const="hub",
                       help="upload to the Hugging Face Hub (needs a token), whatever release.target says")
    p.add_argument("--prune", action="store_true",
                   help="also delete remote files this tool did not upload (default: keep them)")


def _publish_configure(cfg, args):
    update = {}
    if getattr(args, "target", None):
        update["target"] = args.target
    if getattr(args, "prune", False):
        update["prune_remote"] = True
    return cfg.model_copy(update={"release": cfg.release.model_copy(update=update)}) if update else cfg


def _publish_run(cfg, run, args) -> list[str]:
    from release.publish import publish

    return publish(cfg, run)


def _publish_summary(lines: list[str] | None, cfg, run) -> str:
    from release.publish import load_lines

    where, code = load_lines(cfg)
    out = [f"publish: {line}" for line in lines or []]
    out += [f"released to {where}; load it with:"] + [f"  {c}" for c in code]
    return "\n".join(out)


def _verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="a release folder, e.g. runs/demo/release/dataset")


def _verify_run(cfg, run, args) -> Path:
    from release.manifest import verify

    bad = verify(args.dir)
    if bad:
        raise GateClosed("\n".join(f"BAD {line}" for line in bad))
    return args.dir


def _verify_summary(folder: Path, cfg, run) -> str:
    return f"verify: {folder} matches its manifest"


PACKAGE = Command(PACKAGE_HELP, _package_run, _package_summary)
# Publishing always runs (it is idempotent and cheap): each time it re-checks the release against the audit.
PUBLISH = Command(PUBLISH_HELP, _publish_run, _publish_summary, _publish_arguments, _publish_configure,
                  reruns=lambda args: True)
VERIFY = Command(VERIFY_HELP, _verify_run, _verify_summary, _verify_arguments)
