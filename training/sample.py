"""The sampling stage (`cspine sample`): trained EMA U-Net(s) in model/ -> samples/ (PNGs + samples.parquet).

For every checkpoint in ``sample.checkpoints`` ("final" = model/pipeline, or "step-N") it draws
``sample.num_images`` images with :func:`training.sampling.generate`, so image ``i`` depends only on
(seed, i). The indices are cut into shards of ``sample.shard_size``; a shard's PNGs are written first
(each atomically) and then its record ``samples/shards/{checkpoint}-{k:05d}.json``, so a killed run
resumes at the first shard without a record and produces byte-identical files to an uninterrupted run
(a shard's batches are always the same). Under ``accelerate launch`` shard k goes to process
k mod world; the images do not depend on which process made them. The main process then writes
``samples/samples.parquet`` (SAMPLES_COLUMNS, checkpoints in config order, then index order).

Image ids are ``{checkpoint}-{i:06d}``; files are ``images/{image_id}.png``, 16-bit grayscale by default
(``sample.bit_depth: 8`` for 8-bit).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pandas as pd

from cspine import atomic
from cspine.config import RunConfig
from cspine.images import from_unit, write_png
from cspine.rundir import SAMPLES_COLUMNS, RunDir

log = logging.getLogger("cspine.sample")


@dataclass(frozen=True)
class Shard:
    checkpoint: str
    number: int
    indices: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.checkpoint}-{self.number:05d}"


def image_id(checkpoint: str, i: int) -> str:
    return f"{checkpoint}-{i:06d}"


def plan_sample_shards(checkpoints: list[str], num_images: int, shard_size: int) -> list[Shard]:
    """Every shard of the run, checkpoints in order, each a run of consecutive indices."""
    return [
        Shard(ckpt, k, tuple(range(start, min(start + shard_size, num_images))))
        for ckpt in checkpoints
        for k, start in enumerate(range(0, num_images, shard_size))
    ]


def shard_record_path(run: RunDir, shard: Shard):
    return run.samples / "shards" / f"{shard.name}.json"


def settings(cfg: RunConfig) -> dict:
    """What a shard's images depend on; a record made with other settings is an error, not a skip."""
    sc = cfg.sample
    return {"seed": sc.seed if sc.seed is not None else cfg.seed, "scheduler": sc.scheduler,
            "steps": sc.steps, "bit_depth": sc.bit_depth, "batch_size": sc.batch_size,
            "shard_size": sc.shard_size}


def read_record(run: RunDir, shard: Shard, want: dict) -> list[dict] | None:
    """The rows of a finished shard, or None if it is not finished yet."""
    path = shard_record_path(run, shard)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt shard record ({err}); delete it to redo the shard") from None
    if record.get("settings") != want:
        raise ValueError(
            f"{path} was made with sampling settings {record.get('settings')} but the config now says {want}: "
            f"delete {run.samples} to resample with the new settings"
        )
    return record["rows"]


def make_shard(run: RunDir, shard: Shard, unet, scheduler, want: dict) -> list[dict]:
    """Generate, write and record one shard; returns its rows."""
    from training.sampling import generate

    images = generate(unet, scheduler, shard.indices, want["seed"], want["steps"],
                      batch_size=want["batch_size"], progress=False)
    rows = []
    for i, img in zip(shard.indices, images):
        iid = image_id(shard.checkpoint, i)
        file = f"images/{iid}.png"
        write_png(run.samples / file, from_unit(img, want["bit_depth"]))
        rows.append(dict(image_id=iid, file=file, seed=want["seed"], scheduler=want["scheduler"],
                         steps=want["steps"], checkpoint=shard.checkpoint))
    atomic.write_json(shard_record_path(run, shard), {"settings": want, "rows": rows})
    return rows


def _same_table(path, table: pd.DataFrame) -> bool:
    """Whether ``path`` already holds exactly ``table``."""
    if not path.is_file():
        return False
    try:
        return pd.read_parquet(path).equals(table)
    except Exception:  # unreadable (e.g. truncated by a crash): rewrite it
        return False


def sample(cfg: RunConfig, run: RunDir, progress: bool = True) -> pd.DataFrame:
    """Run (or resume, or skip) the sampling stage; returns the samples table."""
    import torch
    from tqdm.auto import tqdm

    from training.sampling import load_unet, make_scheduler

    from training.train import process_state

    state = process_state()  # honours ACCELERATE_USE_CPU: CPU processes join one gloo group
    sc = cfg.sample
    want = settings(cfg)
    shards = plan_sample_shards(sc.checkpoints, sc.num_images, sc.shard_size)
    mine = [s for k, s in enumerate(shards) if k % state.num_processes == state.process_index]
    if state.is_main_process:
        run.sample_images.mkdir(parents=True, exist_ok=True)
        atomic.clean_temporaries(run.samples)
    state.wait_for_everyone()

    todo = [s for s in mine if read_record(run, s, want) is None]
    done_images = sum(len(s.indices) for s in mine) - sum(len(s.indices) for s in todo)
    bar = tqdm(total=sum(len(s.indices) for s in mine), initial=done_images, unit="img",
               desc=f"sampling ({sc.scheduler}, {sc.steps} steps)", disable=not (progress and state.is_main_process))
    unet, loaded = None, None
    scheduler = None
    try:
        for shard in todo:
            if loaded != shard.checkpoint:
                unet = load_unet(run, shard.checkpoint, device=state.device)
                if state.device.type == "cpu" and sc.num_threads:
                    torch.set_num_threads(sc.num_threads)
                scheduler = make_scheduler(sc.scheduler, run)
                loaded = shard.checkpoint
            make_shard(run, shard, unet, scheduler, want)
            bar.update(len(shard.indices))
    finally:
        bar.close()
    state.wait_for_everyone()

    rows = []
    for shard in shards:
        got = read_record(run, shard, want)
        if got is None:
            raise RuntimeError(f"shard {shard.name} has no record after sampling ({shard_record_path(run, shard)})")
        rows.extend(got)
    table = pd.DataFrame(rows, columns=list(SAMPLES_COLUMNS))
    if state.is_main_process and not _same_table(run.samples_table, table):
        # Written only when it changes: later stages (audit, evaluate) key their skip on this file.
        with atomic.atomic_path(run.samples_table) as tmp:
            table.to_parquet(tmp, index=False)
        log.info("%d samples in %s", len(table), run.samples_table)
    state.wait_for_everyone()
    return table
