"""`cspine release` (what `make release` runs): every stage in pipeline order on one config, each through the
`cspine` CLI itself (``release.cli.main``) so each stage skips the work it already finished; an interrupted
release resumes when re-run. Prints one progress line per stage and, at the end, where the release is and the
two lines of Python that load it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cspine.stage import parse_overrides


def stage_list(cfg) -> list[str]:
    stages = (["demo-data"] if cfg.data.source == "phantom" else []) + ["prepare", "train", "sample", "audit"]
    if cfg.evaluate.enabled:
        stages.append("evaluate")
    return stages + ["package", "publish"]


def load_lines(cfg, run) -> tuple[str, list[str]]:
    """Where the release went and the two lines that load it (Hub ids with a token, else local paths)."""
    from huggingface_hub import get_token

    if get_token():
        ds, model = cfg.release.dataset_repo, cfg.release.model_repo
        where = f"https://huggingface.co/datasets/{ds} and https://huggingface.co/{model}"
    else:
        hub = Path(cfg.release.local_hub).resolve()
        ds, model = str(hub / cfg.release.dataset_repo), str(hub / cfg.release.model_repo)
        where = f"local hub folder {hub} (run folder {run.root})"
    return where, [
        f'from datasets import load_dataset; ds = load_dataset("{ds}", split="train")',
        f'from diffusers import DiffusionPipeline; pipe = DiffusionPipeline.from_pretrained("{model}")',
    ]


def run_release(config: Path, run_dir: Path | None, overrides: list[str]) -> int:
    from cspine.config import ConfigError, load_config
    from cspine.rundir import RunDir
    from release.cli import main as cspine

    try:
        cfg = load_config(config, parse_overrides(overrides))
    except ConfigError as err:
        print(f"cspine release: {err}", file=sys.stderr)
        return 2
    if run_dir is not None:
        cfg = cfg.model_copy(update={"run_dir": run_dir})
    common = ["--config", str(config)] + (["--run-dir", str(run_dir)] if run_dir else [])
    for o in overrides:
        common += ["--set", o]
    stages = stage_list(cfg)
    t_all = time.perf_counter()
    for k, stage in enumerate(stages, 1):
        print(f"[{k}/{len(stages)}] {stage} ...", flush=True)
        t0 = time.perf_counter()
        rc = cspine([stage] + common)
        if rc:
            print(f"[{k}/{len(stages)}] {stage} FAILED (exit {rc}); fix the cause and re-run: finished stages are skipped",
                  file=sys.stderr, flush=True)
            return rc
        print(f"[{k}/{len(stages)}] {stage} done in {time.perf_counter() - t0:.1f} s", flush=True)
    where, lines = load_lines(cfg, RunDir(cfg.resolved_run_dir))
    print(f"release done in {time.perf_counter() - t_all:.0f} s: {where}")
    print("load it with:")
    for line in lines:
        print(f"  {line}")
    return 0
