"""Packaging throughput: `cspine package`'s shard writer (the sample PNGs byte for byte, each checked to carry
image data only; pyarrow, zstd, small row groups) against what a user would otherwise write with ``datasets``:
``Dataset.from_dict({"image": [{"bytes": file bytes, "path": None}, ...]}).to_parquet`` (the file bytes
embedded as they are, as ours), on the same images in the same process.

Both end with Parquet whose image bytes are the files' bytes (checked) and that ``load_dataset`` decodes to the
same pixels (checked); reported as images/s, MB/s (of Parquet written) and the ratio ours / datasets."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_IMAGES = int(os.environ.get("BENCH_PACKAGE_N", "400"))
SIZE = int(os.environ.get("BENCH_PACKAGE_SIZE", "256"))


def _make_images(folder: Path) -> list[str]:
    from cspine.images import write_png
    from tests.fakerun import blob_image

    rng = np.random.default_rng(0)
    files = []
    for i in range(N_IMAGES):
        p = folder / f"img-{i:05d}.png"
        write_png(p, blob_image(rng, SIZE))
        files.append(str(p))
    return files


def run_ours(files: list[str], out: Path) -> float:
    from release import shards

    meta = pd.DataFrame({"image_id": [Path(f).stem for f in files], "seed": 0, "steps": 50})
    features = shards.features_for(meta)
    plan = shards.plan_shards([Path(f).stat().st_size for f in files], 500e6)
    jobs = [shards.ShardJob(out / shards.shard_name(k, len(plan)), meta.iloc[r.start:r.stop].reset_index(drop=True),
                            files[r.start:r.stop], f"bench-{k}") for k, r in enumerate(plan)]
    t0 = time.perf_counter()
    shards.write_shards(jobs, features, 100)
    return time.perf_counter() - t0


def run_datasets(files: list[str], out: Path) -> float:
    import datasets

    t0 = time.perf_counter()
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": Path(f).read_bytes(), "path": None} for f in files], "image_id": [Path(f).stem for f in files], "seed": [0] * len(files),
         "steps": [50] * len(files)},
        features=datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string"),
                                    "seed": datasets.Value("int64"), "steps": datasets.Value("int64")}),
    )
    ds.to_parquet(str(out / "train.parquet"))
    return time.perf_counter() - t0


def _mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e6


def main() -> None:
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "png").mkdir()
        files = _make_images(tmp / "png")
        (tmp / "ours").mkdir()
        (tmp / "hf").mkdir()
        t_hf = run_datasets(files, tmp / "hf")
        t_ours = run_ours(files, tmp / "ours")
        a = datasets.load_dataset("parquet", data_files=str(tmp / "ours" / "*.parquet"), split="train")
        b = datasets.load_dataset("parquet", data_files=str(tmp / "hf" / "*.parquet"), split="train")
        assert all(np.array_equal(np.array(a[i]["image"]), np.array(b[i]["image"])) for i in range(0, len(a), 37))
        import pyarrow.parquet as pq

        cells = [c["bytes"] for p in sorted((tmp / "ours").glob("*.parquet"))
                 for c in pq.read_table(p, columns=["image"]).column("image").to_pylist()]
        assert all(cells[i] == Path(files[i]).read_bytes() for i in range(0, len(files), 37))
        mb_ours, mb_hf = _mb(tmp / "ours"), _mb(tmp / "hf")
    cores = os.cpu_count()
    print(f"{N_IMAGES} images {SIZE}x{SIZE} 16-bit, {cores} cores, load average {os.getloadavg()[0]:.1f} (ratios need an idle machine)")
    print(f"cspine package shards : {N_IMAGES / t_ours:8.1f} images/s  {mb_ours / t_ours:7.2f} MB/s  ({t_ours:.2f} s, {mb_ours:.1f} MB)")
    print(f"datasets to_parquet   : {N_IMAGES / t_hf:8.1f} images/s  {mb_hf / t_hf:7.2f} MB/s  ({t_hf:.2f} s, {mb_hf:.1f} MB)")
    print(f"ratio (ours / datasets, images/s): {t_hf / t_ours:.2f}x")


if __name__ == "__main__":
    main()
