"""Release-time scan for real pixels: does any image in a release folder show a real training or holdout image?

Where it sits: after `cspine package` has written release/dataset and release/model (and before `publish`),
every image that would ship is compared with the run's real images (data/pixels.npy, rows named by
data/index.parquet). It finds them wherever they hide:

- standalone image files (found by their magic bytes, whatever the suffix: PNG, JPEG, WebP, GIF, BMP, TIFF;
  every frame of an animation),
- Parquet shards: any column whose values are image bytes (the ``datasets`` Image struct ``{bytes, path}``,
  or plain binary),
- ``data:image/...;base64,`` URIs inside any other file (Markdown, HTML, SVG, JSON),
- tiles of a figure: each decoded image is also cut into tiles (recursive XY-cut on uniform rows and
  columns, plus connected components of non-background pixels; strips of touching square tiles are split),
  so a matplotlib figure with a row of real thumbnails, at any scale and with gaps and labels, is checked
  tile by tile.

Matching. A candidate (a whole image or a tile) that is not square is tried as each of its square views
(:func:`square_views`: padded to its long side, and windows of its short side along it, since ``cspine
prepare`` crops a square around the spine), and then:

1. Retrieval: Pearson correlation of 32x32 area-downsampled, intensity-normalised pixels with every real
   image (one matrix product); the ``top_k`` real images with ``|r| >= retrieve_min`` go on (a cheap prune:
   a 3% crop of a detailed chest radiograph already drops to r = 0.71, so the bar is low).
2. Score: both images at ``s = min(64, real side, candidate side)`` px, band-passed (a Gaussian blur of 1/64
   of the side minus one of 3/64: the layout that all radiographs of one view share drops out, the detail
   that makes one image itself stays, quantisation and JPEG noise are damped), Pearson-correlated over the
   inner 3/4 of the square (crop edges disturb the band-pass near the border), at the best of a search over
   the candidate's alignment (scale 0.94-1.06, shifts up to 3/64 of the side, refined to quarter pixels),
   intensity curve (gamma 0.5-2, and inversion: MONOCHROME1 shown raw) and a softening of the real image
   (a copy enlarged with a smoothing filter, like matplotlib's imshow, is softer than the cache). Which real
   images get this full search is decided on rank-transformed features, which no intensity curve changes.
3. pHash (imagehash, 64 bits) of the candidate against the matched real image, as a second, independent
   witness: a hit needs ``score >= min_score`` *and* a pHash Hamming distance ``<= max_phash``.

A candidate whose pixels equal a real cache row exactly is reported with method ``exact``.

Thresholds, measured at 64 px against 302 real images (300 phantoms of the demo generator as `cspine prepare`
fits them, and the CR radiographs RG1 and RG3 of pydicom-data) with copies of 62 of them and 183 distinct
images (150 phantoms of other patients, drawn with another seed, and 33 others: CT/MR/US/NM images and
25-50% crops of the CR radiographs):

- distinct images score at most 0.984 (99th percentile 0.981, median 0.950): phantoms of one generator are
  alike at 64 px. Global 32x32 pixel correlation cannot tell them from copies (distinct phantoms reach
  0.995, a gamma-changed copy 0.987), nor can pHash (distinct phantoms share their pHash to 0-4 bits).
  The non-phantom images score at most 0.73.
- copies score at least 0.990: 8-bit (1.000), enlarged x2.03 bicubic (0.994) or x1.7 nearest (0.996), JPEG
  q50-70 (0.994), 2-3% crops re-enlarged (0.994), gamma 0.7 (1.000), inverted (1.000), the phantom's source
  file at 512x400 (0.997); tiles of evaluation/report.py's examples figure (x1.6, antialiased) 0.995.
  Weaker, and not all found: copies shrunk to 0.75x (0.984-0.99) or 0.56x (0.977-0.98) of the cache side,
  and contrast windows that clip 15% of the pixels (0.980-0.99).
- ``min_score = 0.987`` splits the two measured ranges in the middle. pHash distances of copies were at most
  16 (3% crops), unrelated images sit near 32 +- 4, so ``max_phash = 20`` keeps every copy.

Candidates smaller than ``min_side`` (32 px) are not judged (too little detail to tell a copy from a
look-alike) and are listed in ``ScanResult.unjudged``.

Cost (one core of this 2-core machine, busy with other jobs): building the index of 200-300 real 64-px
images ~0.1-0.4 s; retrieval one [candidates x reals] matrix product; each candidate that passes retrieval
(every phantom-like image does, unrelated ones mostly not) ~20-40 ms. tests/release/test_realscan.py's
folder of 106 images (48 files, 51 Parquet rows, 3 figures with 32 tiles, one data URI; 316 candidates, 263
aligned) takes 5-9 s; a few hundred Parquet rows plus a few figures stay under 30 s.

Bad input: a file that claims to be an image (by suffix or magic bytes) but cannot be decoded raises
:class:`RealScanError` naming the file and, for Parquet cells and data URIs, where in it: a release scan
that cannot look at a file cannot vouch for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

#: Magic bytes of the image formats Pillow decodes that may hide in a release.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif", ".apng"}
_DATA_URI = re.compile(rb"data:image/[A-Za-z0-9.+-]+;base64,([A-Za-z0-9+/=\s]+)")
#: Files never opened for images: weights are numbers only (their header is checked by release/leaks.py).
_SKIP_SUFFIXES = {".safetensors", ".bin", ".pt", ".ckpt"}
MAX_FRAMES = 64


class RealScanError(ValueError):
    """A file (or a part of one) in the scanned folder could not be decoded; the message names it."""


@dataclass(frozen=True)
class Thresholds:
    """When a candidate counts as a real image (see the module docstring for the evidence)."""

    min_score: float = 0.987  # aligned band-pass correlation
    max_phash: int = 20  # pHash Hamming distance of 64 bits
    retrieve_min: float = 0.5  # |Pearson| of 32x32 pixels for a real image to be verified at all
    top_k: int = 24  # real images verified per candidate
    min_side: int = 32  # smaller candidates are not judged
    max_compare: int = 64  # side at which images are verified


@dataclass(frozen=True)
class Hit:
    """A real image found in a released file."""

    file: str  # path relative to the scanned folder
    where: str  # "image", "frame 2", "row 5 column image", "data URI 1", each maybe + " tile x0,y0,x1,y1"
    real_id: str  # image_id of the matched real image
    score: float  # aligned rank/high-pass correlation (1.0: the same image)
    phash: int  # pHash Hamming distance to the real image (of 64)
    method: str  # "exact" (same pixels as the cache) or "near" (score and pHash)

    def __str__(self) -> str:
        return (f"{self.file} [{self.where}]: real image {self.real_id} ({self.method}, score {self.score:.3f}, "
                f"pHash distance {self.phash})")


@dataclass
class ScanResult:
    hits: list[Hit]
    files: int = 0  # files that held at least one image
    images: int = 0  # decoded images (files, frames, Parquet cells, data URIs)
    candidates: int = 0  # images and tiles compared
    verified: int = 0  # candidates that passed retrieval and were aligned
    unjudged: list[str] = field(default_factory=list)  # images smaller than min_side
    seconds: float = 0.0


@dataclass(frozen=True)
class RealImages:
    """The run's real images: ``pixels`` [N, R, R] (uint16 cache rows) and their ``ids``."""

    ids: list[str]
    pixels: np.ndarray

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3 or self.pixels.shape[1] != self.pixels.shape[2]:
            raise ValueError(f"real pixels must be [N, R, R], got {self.pixels.shape}")
        if len(self.ids) != len(self.pixels):
            raise ValueError(f"{len(self.ids)} ids for {len(self.pixels)} real images")


def read_real(run) -> RealImages:
    """Every real image of a run (training and holdout) from data/index.parquet and data/pixels.npy."""
    import pandas as pd

    from cspine.rundir import RunDir

    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    run.require(run.index, "prepare")
    run.require(run.pixels, "prepare")
    idx = pd.read_parquet(run.index, columns=["image_id", "cache_row"])
    px = np.load(run.pixels, mmap_mode="r")
    rows = idx["cache_row"].to_numpy()
    if len(rows) and (rows.min() < 0 or rows.max() >= len(px)):
        raise ValueError(f"{run.index}: cache_row outside the {len(px)} rows of {run.pixels}")
    return RealImages(idx["image_id"].astype(str).tolist(), np.asarray(px[rows]))


# -- decoding ------------------------------------------------------------------------------------------
def _frames(data: bytes | Path, name: str) -> Iterator[tuple[str, np.ndarray]]:
    """(where, float32 gray image) of every frame of an image file or blob; alpha composited on white."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        with Image.open(src) as im:
            n = getattr(im, "n_frames", 1)
            for k, frame in enumerate(ImageSequence.Iterator(im)):
                if k >= MAX_FRAMES:
                    break
                yield ("image" if n == 1 else f"frame {k}"), _gray(frame)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise RealScanError(f"{name}: cannot decode the image ({type(err).__name__}: {err})") from None


def _gray(im) -> np.ndarray:
    """A Pillow frame as float32 gray in [0, 1] (16-bit kept, colour to luminance, alpha over white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode != "I" or a.max() > 255 else 255.0
        return (np.clip(a, 0, top) / top).astype(np.float32)
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        lum = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
        return lum * rgba[..., 3] + (1.0 - rgba[..., 3])
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def _is_image_bytes(head: bytes) -> bool:
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _parquet_images(path: Path, name: str) -> Iterator[tuple[str, np.ndarray]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowInvalid, OSError) as err:
        raise RealScanError(f"{name}: not a readable Parquet file ({err})") from None

    def binary_paths(t: pa.DataType, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return [prefix]
        if pa.types.is_struct(t):
            return [p for f in t for p in binary_paths(f.type, prefix + (f.name,))]
        return []

    columns = {f.name: binary_paths(f.type, ()) for f in schema}
    columns = {k: v for k, v in columns.items() if v}
    if not columns:
        return
    row0 = 0
    for batch in pf.iter_batches(columns=list(columns), batch_size=256):
        for col, paths in columns.items():
            values = batch.column(col).to_pylist()
            for i, v in enumerate(values):
                for p in paths:
                    blob = v
                    for key in p:
                        blob = blob.get(key) if isinstance(blob, dict) else None
                    if not blob or not _is_image_bytes(bytes(blob[:16])):
                        continue
                    where = f"row {row0 + i} column {'.'.join((col, *p))}"
                    for w, arr in _frames(bytes(blob), f"{name} ({where})"):
                        yield (where if w == "image" else f"{where} {w}"), arr
        row0 += batch.num_rows


def _data_uri_images(data: bytes, name: str) -> Iterator[tuple[str, np.ndarray]]:
    for k, m in enumerate(_DATA_URI.finditer(data)):
        where = f"data URI {k} at byte {m.start()}"
        try:
            blob = base64.b64decode(re.sub(rb"\s+", b"", m.group(1)), validate=True)
        except (binascii.Error, ValueError) as err:
            raise RealScanError(f"{name} ({where}): bad base64 ({err})") from None
        for w, arr in _frames(blob, f"{name} ({where})"):
            yield (where if w == "image" else f"{where} {w}"), arr


def iter_images(folder: Path) -> Iterator[tuple[str, str, np.ndarray]]:
    """(file relative to ``folder``, where in it, float32 gray image) for every image under ``folder``."""
    folder = Path(folder)
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.suffix.lower() in _SKIP_SUFFIXES:
            continue
        rel = p.relative_to(folder).as_posix()
        with open(p, "rb") as fh:
            head = fh.read(16)
        if _is_image_bytes(head) or p.suffix.lower() in IMAGE_SUFFIXES:
            for where, arr in _frames(p, rel):
                yield rel, where, arr
        elif p.suffix.lower() == ".parquet" or head.startswith(b"PAR1"):
            for where, arr in _parquet_images(p, rel):
                yield rel, where, arr
        else:
            data = p.read_bytes()
            if b"data:image/" in data:
                for where, arr in _data_uri_images(data, rel):
                    yield rel, where, arr


# -- tiles ------------------------------------------------------------------------------------------------
def _runs(occupied: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of True in a 1-D boolean array."""
    d = np.diff(np.concatenate([[0], occupied.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _xy_cut(x: np.ndarray, y0: int, x0: int, depth: int, out: set, tol: float = 0.04) -> None:
    """Recursive XY-cut of ``x`` (scaled to [0, 1]): split on uniform rows (gaps, margins: every pixel within
    ``tol`` of the others), then on uniform columns, and so on, adding every part's box to ``out``."""
    h, w = x.shape
    for axis in (0, 1):
        lines = x if axis == 0 else x.T
        runs = _runs(lines.max(axis=1) - lines.min(axis=1) > tol)
        if len(runs) > 1 or (runs and (runs[0][0] > 0 or runs[-1][1] < (h if axis == 0 else w))):
            for a, b in runs:
                sub = x[a:b] if axis == 0 else x[:, a:b]
                oy, ox = (y0 + a, x0) if axis == 0 else (y0, x0 + a)
                out.add((oy, ox, oy + sub.shape[0], ox + sub.shape[1]))
                if depth < 6 and min(sub.shape) >= 8:
                    _xy_cut(sub, oy, ox, depth + 1, out, tol)
            return


def find_tiles(img: np.ndarray, min_side: int = 32, max_tiles: int = 2000) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, x0, y1, x1) of the parts of ``img`` that may be images of their own (figure tiles).

    Boxes come from a recursive XY-cut on uniform rows and columns (grids with gaps of any colour, rows of
    axes with labels beside them) and from 8-connected components of content, i.e. pixels differing from the
    background (the median of the border pixels) by more than 4% of the image's range (free layouts). A box
    much wider (or taller) than high is also cut into round(aspect) square tiles, for strips of touching
    tiles. Boxes smaller than ``min_side`` on a side, or the whole image, are dropped.
    """
    h, w = img.shape
    if min(h, w) < 2 * min_side:
        return []
    lo, hi = float(img.min()), float(img.max())
    if hi - lo < 1e-6:
        return []
    x = (img - lo) / (hi - lo)
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    mask = np.abs(x - np.median(border)) > 0.04
    boxes: set[tuple[int, int, int, int]] = set()
    _xy_cut(x, 0, 0, 0, boxes)
    from scipy import ndimage

    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    for sl in ndimage.find_objects(labels):
        if sl is not None:
            boxes.add((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop))
    out = set()
    for y0, x0, y1, x1 in boxes:
        bh, bw = y1 - y0, x1 - x0
        if min(bh, bw) < min_side or (bh, bw) == (h, w):
            continue
        out.add((y0, x0, y1, x1))
        ratio = max(bh, bw) / min(bh, bw)
        k = int(round(ratio))
        if ratio >= 1.6 and k <= 16:
            for j in range(k):
                if bw >= bh:
                    a, b = x0 + round(j * bw / k), x0 + round((j + 1) * bw / k)
                    out.add((y0, a, y1, b))
                else:
                    a, b = y0 + round(j * bh / k), y0 + round((j + 1) * bh / k)
                    out.add((a, x0, b, x1))
    return sorted(tuple(int(v) for v in b) for b in out)[:max_tiles]


# -- features ------------------------------------------------------------------------------------------------
def pad_square(img: np.ndarray) -> np.ndarray:
    """Centre ``img`` on a square of its long side, padded with its minimum (cspine prepare pads with black)."""
    h, w = img.shape
    s = max(h, w)
    if h == w:
        return img
    out = np.full((s, s), float(img.min()), dtype=np.float32)
    out[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = img
    return out


def square_views(img: np.ndarray, positions: int = 5) -> list[np.ndarray]:
    """The square versions of ``img`` a real cache row may correspond to: padded to its long side (how
    ingestion used to make images square), and windows of its short side at ``positions`` places along the
    long side (how `cspine prepare` crops now: a square around the spine, wherever it lies)."""
    h, w = img.shape
    if h == w:
        return [img]
    s, slack = min(h, w), abs(h - w)
    offsets = sorted({round(slack * k / (positions - 1)) for k in range(positions)})
    crops = [img[o:o + s, :] if h > w else img[:, o:o + s] for o in offsets]
    return [pad_square(img), *crops]


def _resize(img: np.ndarray, side: int) -> np.ndarray:
    """Area (box-filter) resize of a square float image to ``side`` x ``side``."""
    if img.shape[0] == side:
        return img.astype(np.float32, copy=False)
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    return np.asarray(im.resize((side, side), Image.Resampling.BOX), dtype=np.float32)


def _zscore(v: np.ndarray) -> np.ndarray:
    v = v.reshape(len(v), -1).astype(np.float32)
    v = v - v.mean(axis=1, keepdims=True)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _rank(img: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return (rankdata(img.ravel(), method="average") / img.size).reshape(img.shape).astype(np.float32)


def _phash(img: np.ndarray) -> np.ndarray:
    import imagehash
    from PIL import Image

    lo, hi = float(img.min()), float(img.max())
    a = np.rint((img - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
    return imagehash.phash(Image.fromarray(a, mode="L")).hash.reshape(-1)


SIGMA = 3.0 / 64  # high-pass: minus a Gaussian blur of this fraction of the side
PRE = 1.0 / 64  # and a light blur first (band-pass), against quantisation and JPEG noise
MARGIN = 8 / 64  # correlation over the square minus this fraction on each side (crop edges disturb the band-pass)
#: the real image is also compared after this much extra blur (64ths of the side): a copy enlarged with a
#: smoothing filter (matplotlib's antialiased imshow) is softer than the cache it came from
REAL_BLURS = (0.0, 0.7)
SCALES = np.linspace(0.94, 1.06, 7)
SHIFTS = np.arange(-3, 4) / 64  # fractions of the side


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(x, sigma, mode="nearest") if sigma > 0 else x


def _bandpass(img: np.ndarray, rank: bool = False) -> np.ndarray:
    """Square float image at its comparison side -> band-passed (after a rank transform with ``rank``)."""
    side = img.shape[0]
    x = _rank(img) if rank else img.astype(np.float32)
    x = _gauss(x, PRE * side)
    return (x - _gauss(x, SIGMA * side)).astype(np.float32)


def _inner(x: np.ndarray) -> np.ndarray:
    """[b, s, s] -> z-scored inner squares [b, D]."""
    side = x.shape[-1]
    m = int(round(MARGIN * side))
    return _zscore(x[:, m : side - m, m : side - m])


def _warps(scales, shifts_y, shifts_x) -> np.ndarray:
    """Affine thetas [n, 2, 3]: output pixel u samples the candidate at scale * u + shift (normalised units)."""
    out = [[[s, 0.0, 2 * tx], [0.0, s, 2 * ty]] for s in scales for ty in shifts_y for tx in shifts_x]
    return np.asarray(out, dtype=np.float32)


def _axis_weights(scale: np.ndarray, shift: np.ndarray, side: int) -> np.ndarray:
    """Bilinear interpolation matrices [n, side, side] along one axis: row i holds the weights with which
    output pixel i (centre u_i in normalised units, align_corners=False) samples the input at scale * u_i +
    shift, the coordinate clamped to the image as grid_sample's ``padding_mode="border"`` does."""
    n = len(scale)
    u = (np.arange(side, dtype=np.float64) * 2 + 1) / side - 1
    x = ((scale[:, None] * u[None] + shift[:, None] + 1) * side - 1) / 2  # input pixel coordinates
    x = np.clip(x, 0, side - 1)
    x0 = np.floor(x).astype(np.intp)
    x1 = np.minimum(x0 + 1, side - 1)
    w = (x - x0).astype(np.float32)
    m = np.zeros((n, side, side), dtype=np.float32)
    b, i = np.meshgrid(np.arange(n), np.arange(side), indexing="ij")
    m[b, i, x0] = 1 - w
    m[b, i, x1] += w  # x1 == x0 only at the clamp, where w == 0
    return m


_COARSE: dict = {}


def _warped_features(band: np.ndarray, thetas: np.ndarray, coarse: bool = False) -> np.ndarray:
    """Features [n, D] of the band-passed candidate resampled (bilinear, border padding) under each
    scale/shift theta. A warp without rotation is separable, so each resampling is two small matrix products,
    rows then columns (``Ay @ band @ Ax.T``): what ``grid_sample`` computes (tests/release/test_realscan.py
    compares them). Building grid_sample's [n, side, side, 2] grid and sampling it was most of the scan's
    time: the demo release's scan took 64-77 s that way and 32-37 s this way (two runs each)."""
    side = band.shape[0]
    mats = _COARSE.get(side) if coarse else None
    if mats is None:
        t = thetas.astype(np.float64)
        mats = (_axis_weights(t[:, 1, 1], t[:, 1, 2], side), _axis_weights(t[:, 0, 0], t[:, 0, 2], side))
        if coarse:
            _COARSE[side] = mats
    ay, ax = mats
    return _inner(ay @ band.astype(np.float32) @ ax.transpose(0, 2, 1))


class RealIndex:
    """The real images prepared for scanning: 32-px retrieval vectors, pHashes, exact digests; the
    verification features per comparison side are computed on demand and kept."""

    def __init__(self, real: RealImages):
        self.ids = list(real.ids)
        self.pixels = real.pixels
        self.side = int(real.pixels.shape[1])
        unit = self._unit(np.arange(len(self.ids)))
        self.retrieval = _zscore(np.stack([_resize(a, 32) for a in unit])) if len(unit) else np.zeros((0, 1024))
        self.phash = np.stack([_phash(a) for a in unit]) if len(unit) else np.zeros((0, 64), bool)
        self.exact = {self._digest(a): i for i, a in enumerate(self.pixels)}
        self._feat: dict[tuple, np.ndarray] = {}

    def _unit(self, rows: np.ndarray) -> np.ndarray:
        a = np.asarray(self.pixels[rows])
        top = 65535.0 if a.dtype == np.uint16 else (255.0 if a.dtype == np.uint8 else 1.0)
        return a.astype(np.float32) / top

    @staticmethod
    def _digest(a: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest()

    def small(self, row: int, side: int) -> np.ndarray:
        """Real image ``row`` area-resized to ``side`` (float [0, 1])."""
        key = ("small", side, int(row))
        if key not in self._feat:
            self._feat[key] = _resize(self._unit(np.asarray([row]))[0], side)
        return self._feat[key]

    def features(self, rows: np.ndarray, side: int, rank: bool = False, blur: float = 0.0) -> np.ndarray:
        """Verification features [len(rows), D] of real images ``rows`` at ``side`` px (rank-transformed first
        with ``rank``; ``blur``: a Gaussian of that many 64ths of the side first, as a resampled copy has)."""
        key = (rank, side, blur)
        todo = [int(i) for i in rows if key + (int(i),) not in self._feat]
        if todo:
            f = _inner(np.stack([_bandpass(_gauss(self.small(i, side), blur * side / 64), rank) for i in todo]))
            for i, v in zip(todo, f):
                self._feat[key + (i,)] = v
        return np.stack([self._feat[key + (int(i),)] for i in rows])


GAMMAS = (0.5, 0.7, 1.0, 1.4, 2.0)  # intensity curves undone in the fine alignment (gamma/contrast changes)


def _curve(img: np.ndarray, gamma: float, invert: bool) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    x = (img - lo) / max(hi - lo, 1e-12)
    return (1.0 - x if invert else x) ** gamma


def _fine(warp, px: float, step: float) -> np.ndarray:
    s0, tx0, ty0 = warp
    return _warps(s0 + np.array([-0.01, 0, 0.01]) * step, ty0 + np.array([-0.5, 0, 0.5]) * px * step,
                  tx0 + np.array([-0.5, 0, 0.5]) * px * step)


def _theta_warp(t: np.ndarray) -> tuple[float, float, float]:
    return float(t[0, 0]), float(t[0, 2] / 2), float(t[1, 2] / 2)


def _verify(cand: np.ndarray, index: RealIndex, rows: np.ndarray, th: Thresholds) -> tuple[int, float, bool]:
    """Best (row, score, inverted) of ``cand`` (padded square, float) against real images ``rows``.

    Picking the rows worth a full alignment uses rank-transformed band-pass features (blind to monotone
    intensity changes): the candidate under 343 scale/shift alignments against every row, then half-pixel/1%
    steps around each of the six best rows' alignment. For the two best after that: the candidate under each
    intensity curve of GAMMAS (inverted when the correlation was negative), band-passed, at half-pixel/1%
    steps and then, with the best curve, quarter-pixel/0.5% steps; the score is the best correlation found.
    """
    side = min(th.max_compare, index.side, cand.shape[0])
    small = _resize(cand, side)
    px = 1.0 / side
    coarse = _warps(SCALES, SHIFTS, SHIFTS)
    rank_band = _bandpass(small, rank=True)
    rank_real = index.features(rows, side, True)
    sims = _warped_features(rank_band, coarse, coarse=True) @ rank_real.T  # [warps, rows]
    best_w = np.abs(sims).argmax(axis=0)
    per_row = sims[best_w, np.arange(len(rows))]
    picked = []
    for j in np.argsort(-np.abs(per_row))[:6]:
        fine = _fine(_theta_warp(coarse[best_w[j]]), px, 1.0)
        f = _warped_features(rank_band, fine) @ rank_real[j]
        k = int(np.abs(f).argmax())
        picked.append((abs(float(f[k])), int(j), bool(f[k] < 0), _theta_warp(fine[k])))
    best = (-2.0, int(rows[0]), False)
    for _, j, invert, warp in sorted(picked, reverse=True)[:2]:
        real = np.concatenate([index.features(rows[j : j + 1], side, blur=b) for b in REAL_BLURS])
        top = (-2.0, 1.0, warp)
        for step in (1.0, 0.5):
            fine = _fine(top[2], px, step)
            for g in GAMMAS if step == 1.0 else (top[1],):
                f = (_warped_features(_bandpass(_curve(small, g, invert)), fine) @ real.T).max(axis=1)
                k = int(f.argmax())
                if f[k] > top[0]:
                    top = (float(f[k]), g, _theta_warp(fine[k]))
        if top[0] > best[0]:
            best = (top[0], int(rows[j]), invert)
    return best[1], best[0], best[2]


def scan_images(
    images: Iterator[tuple[str, str, np.ndarray]], index: RealIndex, th: Thresholds = Thresholds(), tiles: bool = True
) -> ScanResult:
    """Compare every (file, where, image) and, with ``tiles``, every tile of it with the real images."""
    t0 = time.perf_counter()
    res = ScanResult(hits=[])
    files: set[str] = set()
    for file, where, img in images:
        files.add(file)
        res.images += 1
        if img.shape == (index.side, index.side) and float(img.max()) <= 1.0:  # a cache row as it is?
            exact = index.exact.get(index._digest(np.rint(img * 65535.0).astype(index.pixels.dtype)))
            if exact is not None:
                res.hits.append(Hit(file, where, index.ids[exact], 1.0, 0, "exact"))
                continue
        boxes = [(0, 0, *img.shape)] + (find_tiles(img, th.min_side) if tiles else [])
        found: list[tuple[Hit, tuple[int, int, int, int]]] = []
        for y0, x0, y1, x1 in boxes:
            part = img[y0:y1, x0:x1]
            label = where if (y0, x0, y1, x1) == (0, 0, *img.shape) else f"{where} tile {x0},{y0},{x1},{y1}"
            if min(part.shape) < th.min_side:
                if label == where:
                    res.unjudged.append(f"{file} [{where}] ({part.shape[1]}x{part.shape[0]} px)")
                continue
            if float(part.max() - part.min()) < 1e-6 or not len(index.ids):
                continue
            res.candidates += 1
            retrieved = False
            for cand in square_views(part):
                aligned, hit = _match(cand, index, th)
                retrieved |= aligned
                if hit is not None:
                    row, score, dist = hit
                    found.append((Hit(file, label, index.ids[row], round(score, 4), dist, "near"), (x0, y0, x1, y1)))
                    break
            res.verified += retrieved
        res.hits += _dedupe(found)
    res.files = len(files)
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def _match(cand: np.ndarray, index: RealIndex, th: Thresholds) -> tuple[bool, tuple[int, float, int] | None]:
    """Whether the square ``cand`` passed retrieval (and was aligned), and (real row, score, pHash bits) when
    it is a copy of a real image."""
    r = (_zscore(_resize(cand, 32)[None]) @ index.retrieval.T)[0]
    rows = np.argsort(-np.abs(r))[: th.top_k]
    rows = rows[np.abs(r[rows]) >= th.retrieve_min]
    if not len(rows):
        return False, None
    row, score, inverted = _verify(cand, index, rows, th)
    if score < th.min_score:
        return True, None
    dist = int(np.count_nonzero(_phash(-cand if inverted else cand) != index.phash[row]))
    return True, ((row, score, dist) if dist <= th.max_phash else None)


def _dedupe(found: list[tuple[Hit, tuple[int, int, int, int]]]) -> list[Hit]:
    """Overlapping boxes of one image (the image itself, its tiles) that match the same real image: keep the
    best-scoring one."""
    out: list[tuple[Hit, tuple[int, int, int, int]]] = []
    for h, box in sorted(found, key=lambda f: -f[0].score):
        if not any(o.real_id == h.real_id and _overlap(box, b) > 0.5 for o, b in out):
            out.append((h, box))
    return sorted((h for h, _ in out), key=lambda h: h.where)


def _overlap(a, b) -> float:
    """Intersection of boxes (x0, y0, x1, y1) over the smaller one's area."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small else 0.0


def scan_folder(folder: Path, real: RealImages | RealIndex, th: Thresholds = Thresholds()) -> ScanResult:
    """Every real image found in any image, Parquet shard or data URI under ``folder`` (see the module doc)."""
    index = real if isinstance(real, RealIndex) else RealIndex(real)
    return scan_images(iter_images(Path(folder)), index, th)
