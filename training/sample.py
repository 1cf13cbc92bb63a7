"""The sampling stage (`cspine sample`): trained EMA U-Net(s) in model/ -> samples/ (PNGs + samples.parquet).

For every checkpoint in ``sample.checkpoints`` ("final" = model/pipeline, or "step-N") it draws
``sample.num_images`` images with :func:`cspine.generation.sampling.generate`, so image ``i`` depends only on
(seed, i). The indices are cut into shards of ``sample.shard_size``; a shard's PNGs are written first
(each atomically) and then its record ``samples/shards/{checkpoint}-{k:05d}.json``, so a killed run
resumes at the first shard without a record and produces byte-identical files to an uninterrupted run
(a shard's batches are always the same). Under ``accelerate launch`` shard k goes to process
k mod world; the images do not depend on which process made them. The main process then writes
``samples/samples.parquet`` (SAMPLES_COLUMNS, checkpoints in config order, then index order).

Image ids are ``{checkpoint}-{i:06d}``; files are ``images/{image_id}.png``, 16-bit grayscale by default
(``sample.bit_depth: 8`` for 8-bit).

Conditional models (the U-Net has a class embedding; model/shape_model.json from `cspine train`): each
checkpoint gets ``counts[k]`` images of curvature class ``k`` (:func:`cspine.generation.shape_model.class_counts` of
``sample.per_class``: the training distribution by default, balanced, unconditional, or a table; the CLI's
``--per-class`` overrides it). Image ``i`` of class ``k`` has id ``{checkpoint}-c{k}-{i:06d}`` and depends only
on (seed, k, i): its noise (stream (3, k, i)) and its landmark layout (stream (4, k, i)), so asking for more
images of one class adds images and changes none. The table's ``curvature`` column holds ``k`` (null for
unconditional images) and ``keypoints`` the layout the image was drawn from, as JSON ``{label: [x, y]}`` in
the image's pixels (the format of data/index.parquet ``labels.keypoints``; null without a layout).
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
    classes: tuple[int | None, ...] | None = None  # class per index (conditional), None: all unconditional

    @property
    def items(self) -> list[tuple[int | None, int]]:
        return list(zip(self.classes or (None,) * len(self.indices), self.indices))

    @property
    def name(self) -> str:
        return f"{self.checkpoint}-{self.number:05d}"


def image_id(checkpoint: str, i: int, k: int | None = None) -> str:
    return f"{checkpoint}-{i:06d}" if k is None else f"{checkpoint}-c{k}-{i:06d}"


def plan_sample_shards(checkpoints: list[str], num_images: int, shard_size: int,
                       counts: dict[int | None, int] | None = None) -> list[Shard]:
    """Every shard of the run, checkpoints in order, each a run of consecutive items. ``counts`` ({class or
    None: n}, classes in order) makes items (k, 0..n-1) per class; without it, indices 0..num_images-1."""
    items = [(k, i) for k, n in (counts or {None: num_images}).items() for i in range(n)]
    out = []
    for ckpt in checkpoints:
        for number, start in enumerate(range(0, len(items), shard_size)):
            part = items[start:start + shard_size]
            classes = tuple(k for k, _ in part)
            out.append(Shard(ckpt, number, tuple(i for _, i in part),
                             None if all(k is None for k in classes) else classes))
    return out


def conditioning(run: RunDir, cfg: RunConfig, per_class=None) -> tuple[dict | None, dict[int | None, int] | None]:
    """(shape model, counts per class) when the run's U-Net is class-conditional, else (None, None).

    Reads the U-Net config of the first checkpoint to sample (every checkpoint of a run shares it) and
    model/shape_model.json. ``per_class`` overrides ``sample.per_class``."""
    from cspine.generation.shape_model import class_counts, read_shape_model

    sc = cfg.sample
    unet_config = run.unet_folder(sc.checkpoints[0]) / "config.json"
    try:
        conditional = json.loads(unet_config.read_text(encoding="utf-8")).get("num_class_embeds") is not None
    except (OSError, json.JSONDecodeError):
        return None, None  # load_unet names the missing model
    if not conditional:
        return None, None
    shape = read_shape_model(run.model / "shape_model.json")
    if shape is None:
        raise FileNotFoundError(f"{run.model / 'shape_model.json'} not found: the conditional model's training "
                                "did not finish; run `cspine train`")
    counts = class_counts(per_class if per_class is not None else sc.per_class, sc.num_images, shape["class_counts"])
    return shape, counts


def shard_record_path(run: RunDir, shard: Shard):
    return run.samples / "shards" / f"{shard.name}.json"


def settings(cfg: RunConfig, counts: dict[int | None, int] | None = None) -> dict:
    """What a shard's images depend on; a record made with other settings is an error, not a skip.
    A conditional run adds the counts per class and the guidance scale."""
    sc = cfg.sample
    out = {"seed": sc.seed if sc.seed is not None else cfg.seed, "scheduler": sc.scheduler,
           "steps": sc.steps, "bit_depth": sc.bit_depth, "batch_size": sc.batch_size,
           "shard_size": sc.shard_size}
    if counts is not None:
        out.update(counts=[[k, n] for k, n in counts.items()], guidance_scale=sc.guidance_scale)
    return out


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


def make_shard(run: RunDir, shard: Shard, unet, scheduler, want: dict, shape_model: dict | None = None) -> list[dict]:
    """Generate, write and record one shard; returns its rows."""
    from cspine.generation.sampling import generate
    from cspine.generation.shape_model import keypoints_json, sample_layout

    size = unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    layouts = [None if k is None or shape_model is None else sample_layout(shape_model, want["seed"], k, i, size)
               for k, i in shard.items]
    images = generate(unet, scheduler, shard.indices, want["seed"], want["steps"],
                      batch_size=want["batch_size"], progress=False, classes=[k for k, _ in shard.items],
                      layouts=layouts, guidance_scale=want.get("guidance_scale", 1.0),
                      map_sigma=(shape_model or {}).get("map_sigma", 1.0))
    rows = []
    for (k, i), layout, img in zip(shard.items, layouts, images):
        iid = image_id(shard.checkpoint, i, k)
        file = f"images/{iid}.png"
        write_png(run.samples / file, from_unit(img, want["bit_depth"]))
        rows.append(dict(image_id=iid, file=file, seed=want["seed"], scheduler=want["scheduler"],
                         steps=want["steps"], checkpoint=shard.checkpoint, curvature=k,
                         keypoints=keypoints_json(layout) if unet.config.in_channels > 1 else None))
    atomic.write_json(shard_record_path(run, shard), {"settings": want, "rows": rows})
    return rows


def samples_frame(rows: list[dict]) -> pd.DataFrame:
    """samples.parquet's table of shard rows: SAMPLES_COLUMNS, ``curvature`` a nullable integer (rows of
    records written before the conditional columns existed get nulls)."""
    table = pd.DataFrame(rows, columns=list(SAMPLES_COLUMNS))
    table["curvature"] = pd.array([None if pd.isna(v) else int(v) for v in table["curvature"]], dtype="Int64")
    table["keypoints"] = table["keypoints"].astype(object).where(table["keypoints"].notna(), None)
    return table


def _same_table(path, table: pd.DataFrame) -> bool:
    """Whether ``path`` already holds exactly ``table``."""
    if not path.is_file():
        return False
    try:
        return pd.read_parquet(path).equals(table)
    except Exception:  # unreadable (e.g. truncated by a crash): rewrite it
        return False


def sample(cfg: RunConfig, run: RunDir, progress: bool = True, per_class=None) -> pd.DataFrame:
    """Run (or resume, or skip) the sampling stage; returns the samples table. ``per_class`` overrides
    ``sample.per_class`` (the CLI's --per-class)."""
    import torch
    from tqdm.auto import tqdm

    from cspine.generation.sampling import load_unet, make_scheduler

    from training.train import process_state

    state = process_state()  # honours ACCELERATE_USE_CPU: CPU processes join one gloo group
    sc = cfg.sample
    shape_model, counts = conditioning(run, cfg, per_class)
    want = settings(cfg, counts)
    shards = plan_sample_shards(sc.checkpoints, sc.num_images, sc.shard_size, counts)
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
            if shape_model is not None:
                make_shard(run, shard, unet, scheduler, want, shape_model)
            else:
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
    table = samples_frame(rows)
    if state.is_main_process:  # the sampler the images were drawn with, for the release (`sampler/` of the model)
        run.sampler_config.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(run.sampler_config, make_scheduler(sc.scheduler, run).to_json_string())
    if state.is_main_process and not _same_table(run.samples_table, table):
        # Written only when it changes: later stages (audit, evaluate) key their skip on this file.
        with atomic.atomic_path(run.samples_table) as tmp:
            table.to_parquet(tmp, index=False)
        log.info("%d samples in %s", len(table), run.samples_table)
    state.wait_for_everyone()
    return table
