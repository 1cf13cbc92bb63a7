"""The release scan for real pixels (release/realscan.py) on a run prepared by the real stages.

The real images are what `cspine prepare` made of a folder holding phantom radiographs (written by the phantom
stage, `write_phantom_folder`) and one real CR radiograph of pydicom-data (RG1, a chest). They are hidden
where issue 9 found them and where they could go next: as tiles of the evaluation's examples figure (the real
``evaluation.report.plot_examples``), inside a Parquet shard written by release/shards.py, as a resized 8-bit
copy, a slightly cropped copy with another contrast curve and the source file itself, and as a data: URI in
Markdown. Distinct images (phantoms of other patients, drawn with another seed, and other real images of
pydicom-data: the leg radiograph RG3, MR, CT) in all the same forms must give no hit.
"""

from __future__ import annotations

import base64
import io
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from cspine.images import to_unit
from cspine.rundir import RunDir
from release import realscan
from cspine.cli import main as cspine
from tests.fakerun import REPO

R = 64


def _png8(a: np.ndarray, size: int | None = None) -> bytes:
    im = Image.fromarray(np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8))
    if size:
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> RunDir:
    """A run whose data/ was made by `cspine prepare` from 200 phantoms plus the RG1 chest radiograph."""
    from training.config import PhantomConfig
    from training.phantom import write_phantom_folder

    root = tmp_path_factory.mktemp("realscan")
    raw = root / "raw"
    write_phantom_folder(root / "phantoms", PhantomConfig(count=200, cases=200, height=256, width=200, seed=5),
                         workers=1, progress=False)
    for png in sorted((root / "phantoms").rglob("*.png")):  # one folder per patient: the folder source's cases
        (raw / png.stem).mkdir(parents=True)
        shutil.copy(png, raw / png.stem / png.name)
    (raw / "cr").mkdir()
    shutil.copy(get_testdata_file("RG1_UNCR.dcm"), raw / "cr" / "chest.dcm")
    run = RunDir(root / "run")
    rc = cspine(["prepare", "--config", str(REPO / "configs" / "demo.yaml"), "--run-dir", str(run.root),
                 "--set", "data.source=folder", "--set", f"data.path={raw}", "--set", f"data.resolution={R}",
                 "--set", "data.holdout_fraction=0.3", "--no-progress"])
    assert rc == 0
    return run


@pytest.fixture(scope="module")
def real(prepared):
    return realscan.read_real(prepared)


@pytest.fixture(scope="module")
def index(real):
    return realscan.RealIndex(real)


@pytest.fixture(scope="module")
def distinct() -> np.ndarray:
    """Phantoms of 48 other patients (another seed), rendered and fitted to the cache as prepare does, float [0, 1]."""
    from training.ingest.resize import fit_square
    from training.phantom import make_image, plan_images

    return np.stack([to_unit(fit_square(to_unit(make_image(77, p, 256, 200)[0]), R)[0])
                     for p in plan_images(48, 48, 77)])


def _other_radiographs() -> dict[str, np.ndarray]:
    """Real images that are not in the run: the leg CR radiograph RG3, an MR and a CT slice, float [0, 1]."""
    from training.ingest.decode import decode_file
    from training.ingest.resize import fit_square

    out = {}
    for name in ("RG3_UNCR.dcm", "MR2_UNCR.dcm", "693_UNCR.dcm"):
        out[name] = to_unit(fit_square(decode_file(get_testdata_file(name), 10**9).pixels, R)[0])
    return out


def _holdout(prepared, real) -> tuple[list[str], np.ndarray]:
    idx = pd.read_parquet(prepared.index)
    ids = idx.loc[idx.split == "holdout", "image_id"].astype(str).tolist()
    rows = [real.ids.index(i) for i in ids]
    return ids, to_unit(real.pixels[rows])


def test_read_real_follows_the_index(prepared, real):
    idx = pd.read_parquet(prepared.index)
    px = np.load(prepared.pixels)
    assert real.ids == idx.image_id.astype(str).tolist() and len(real.ids) == 201
    assert np.array_equal(real.pixels[5], px[idx.cache_row[5]])


def test_examples_figure_real_tiles_found_synthetic_row_not(prepared, real, index, distinct, tmp_path):
    """evaluation/report.py's examples.png: a row of real holdout images over a row of (here: distinct) images."""
    from evaluation.report import plot_examples

    ids, hold = _holdout(prepared, real)
    assert len(ids) >= 8
    folder = tmp_path / "release"
    plot_examples(hold, distinct, folder / "figures" / "eval" / "examples.png", n=8)
    fig = np.asarray(Image.open(folder / "figures" / "eval" / "examples.png"))
    tile = fig.shape[0] / 2 / R
    assert 1.2 < tile < 2.5 and abs(tile - round(tile)) > 0.05  # a non-integer scale, as in the demo

    res = realscan.scan_folder(folder, index)
    found = {h.real_id for h in res.hits}
    assert found == set(ids[:8]), [str(h) for h in res.hits]
    assert len(res.hits) == 8  # one hit per tile
    for h in res.hits:
        assert h.file == "figures/eval/examples.png" and " tile " in h.where and h.method == "near"
        x0, y0, x1, y1 = map(int, h.where.rsplit(" tile ", 1)[1].split(","))
        assert y1 <= fig.shape[0] * 0.55  # the top row (real), never the synthetic row below
        assert h.score >= realscan.Thresholds().min_score and h.phash <= realscan.Thresholds().max_phash


def test_training_grid_of_real_images(real, index, tmp_path):
    """training/train.py's sample grid (2x nearest enlargement, 2 px black gaps) filled with real images."""
    from training.grids import grid_image

    folder = tmp_path / "release"
    folder.mkdir()
    Image.fromarray(grid_image(to_unit(real.pixels[[4, 9, 15, 22, 30, 200]]))).save(folder / "grid.png")
    res = realscan.scan_folder(folder, index)
    assert sorted(h.real_id for h in res.hits) == sorted(real.ids[i] for i in (4, 9, 15, 22, 30, 200))


def test_real_images_inside_a_parquet_shard(real, index, distinct, tmp_path):
    from release import shards

    files = []
    src = tmp_path / "src"
    src.mkdir()
    others = list((distinct[:5] * 65535).astype(np.uint16))
    for k, a in enumerate([real.pixels[3], real.pixels[7], real.pixels[200]] + others):
        Image.fromarray(np.asarray(a)).save(src / f"{k}.png")
        files.append(str(src / f"{k}.png"))
    rows = pd.DataFrame({"image_id": [f"final-{k:06d}" for k in range(len(files))], "seed": range(len(files))})
    features = shards.features_for(rows)
    path = tmp_path / "release" / "data" / shards.shard_name(0, 1)
    job = shards.ShardJob(path, rows, files, "fp")
    shards.write_shard(job, [shards.release_png(f) for f in files], features, rows_per_group=3)

    res = realscan.scan_folder(tmp_path / "release", index)
    got = sorted((h.where, h.real_id, h.method) for h in res.hits)
    assert got == [(f"row {k} column image.bytes", real.ids[i], "exact") for k, i in ((0, 3), (1, 7), (2, 200))]
    assert res.images == len(files)


def test_resized_cropped_and_source_copies(prepared, real, index, tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    assert real.ids[200] == "cr__chest"
    a, b, c = (to_unit(real.pixels[i]) for i in (2, 11, 200))
    (folder / "resized.png").write_bytes(_png8(a, 100))  # 8-bit, 1.56x, bicubic
    crop = b[1:-2, 2:] ** 0.7  # ~3% crop and a gamma change
    Image.fromarray(np.rint(crop * 255).astype(np.uint8)).resize((80, 80), Image.Resampling.BICUBIC).save(
        folder / "crop-gamma.jpg", quality=80)
    (folder / "chest.webp").write_bytes(_webp(c))
    idx = pd.read_parquet(prepared.index)
    source = Path(prepared.root.parent / "raw") / idx.loc[idx.image_id == real.ids[20], "source"].item()
    shutil.copy(source, folder / "figure-source.png")  # the source file itself, at its own size (256x200)

    res = realscan.scan_folder(folder, index)
    got = {h.file: h.real_id for h in res.hits}
    assert got == {"resized.png": real.ids[2], "crop-gamma.jpg": real.ids[11], "chest.webp": real.ids[200],
                   "figure-source.png": real.ids[20]}, [str(h) for h in res.hits]


def _webp(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.rint(a * 255).astype(np.uint8)).save(buf, format="WEBP", quality=90)
    return buf.getvalue()


def test_data_uri_in_markdown(prepared, real, index, distinct, tmp_path):
    ids, hold = _holdout(prepared, real)
    folder = tmp_path / "release"
    folder.mkdir()
    uri = lambda a: "data:image/png;base64," + base64.b64encode(_png8(a)).decode()  # noqa: E731
    (folder / "README.md").write_text(f"# card\n\n![a]({uri(distinct[0])})\n\ntext\n\n<img src=\"{uri(hold[1])}\">\n")
    res = realscan.scan_folder(folder, index)
    got = [(h.file, h.where.split(" at byte")[0], h.real_id) for h in res.hits]
    assert got == [("README.md", "data URI 1", ids[1])]


def test_distinct_images_give_no_hit(index, distinct, tmp_path, capsys):
    """Phantoms of other patients and other real images, alone, in Parquet, in figures, in a grid: nothing."""
    from evaluation.report import plot_examples
    from release import shards
    from training.grids import grid_image

    folder = tmp_path / "release"
    (folder / "images").mkdir(parents=True)
    others = _other_radiographs()
    for k, a in enumerate(distinct):
        (folder / "images" / f"{k}.png").write_bytes(_png8(a, 100 if k % 2 else None))
    for name, a in others.items():
        (folder / "images" / f"{name}.png").write_bytes(_png8(a))
    plot_examples(distinct[:8], distinct[8:16], folder / "figures" / "examples.png", n=8)
    plot_examples(np.stack(list(others.values())), distinct[16:19], folder / "figures" / "others.png", n=3)
    Image.fromarray(grid_image(distinct[16:32])).save(folder / "figures" / "grid.png")
    files = [str(p) for p in sorted((folder / "images").glob("*.png"))]
    rows = pd.DataFrame({"image_id": [f"s{k}" for k in range(len(files))]})
    shards.write_shard(shards.ShardJob(folder / "data" / shards.shard_name(0, 1), rows, files, "fp"),
                       [shards.release_png(f) for f in files], shards.features_for(rows), rows_per_group=8)
    (folder / "card.md").write_text("![x](data:image/png;base64," + base64.b64encode(_png8(distinct[3])).decode() + ")")

    t0 = time.perf_counter()
    res = realscan.scan_folder(folder, index)
    seconds = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n[realscan] distinct: {res.images} images, {res.candidates} candidates, {res.verified} verified "
              f"in {seconds:.1f} s; hits {len(res.hits)}")
    assert res.hits == [], [str(h) for h in res.hits]
    assert res.images == 2 * (len(distinct) + len(others)) + 3 + 1
    assert res.verified >= 2 * len(distinct) + 16 + 16  # files, Parquet rows and figure tiles were all aligned


def test_undecodable_files_are_named(index, tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(realscan.RealScanError, match="broken.png"):
        realscan.scan_folder(folder, index)
    (folder / "broken.png").unlink()
    (folder / "card.md").write_text("![x](data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==)")
    with pytest.raises(realscan.RealScanError, match=r"card.md \(data URI 0"):
        realscan.scan_folder(folder, index)


@pytest.mark.parametrize("side", [32, 64])
def test_separable_warps_equal_torch_grid_sample(side):
    """The scan resamples a candidate under scale/shift warps with two interpolation matrices; the reference
    is torch's affine_grid + grid_sample (bilinear, border padding), on warps inside and beyond the image."""
    import torch

    rng = np.random.default_rng(side)
    band = rng.standard_normal((side, side)).astype(np.float32)
    thetas = realscan._warps(realscan.SCALES, realscan.SHIFTS, realscan.SHIFTS)
    wide = thetas.copy()
    wide[:, 0, 0] *= 1.4  # samples far past the left and right borders
    wide[:, 1, 2] += 0.5
    for t in (thetas, wide):
        grid = torch.nn.functional.affine_grid(torch.from_numpy(t), [len(t), 1, side, side], align_corners=False)
        ref = torch.nn.functional.grid_sample(torch.from_numpy(band)[None, None].expand(len(t), 1, side, side), grid,
                                              mode="bilinear", padding_mode="border", align_corners=False)[:, 0].numpy()
        np.testing.assert_allclose(realscan._warped_features(band, t), realscan._inner(ref), atol=5e-4)
