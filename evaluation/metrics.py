"""Distribution metrics on feature vectors and images: FID, KID, improved precision/recall, MS-SSIM diversity.

Pure functions of their inputs. FID and KID are torchmetrics' implementations: the bundled FID Inception
(cspine.inception) produces the features (cached per image), and a pass-through module hands them to
torchmetrics as its ``feature=`` extractor, so the metric arithmetic is the library's, not ours.
:func:`frechet_distance` is a direct scipy computation, kept to check torchmetrics against (tests) and
for non-Inception features (the radiomics fallback).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from torch import nn


class PrecomputedFeatures(nn.Module):
    """A torchmetrics ``feature=`` extractor whose inputs already are the features (identity)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.num_features:  # torchmetrics probes with a dummy image: answer in shape
            return torch.zeros(x.shape[0], self.num_features, dtype=torch.float64)
        return x


def affine_hull_projection(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in orthonormal coordinates of their joint affine hull (<= n1 + n2 - 1 dims), float64.

    An isometry of every point involved: means, covariances and so the Fréchet distance are unchanged,
    while the eigen-decomposition shrinks from D x D (2048) to r x r. Returns the inputs when r >= D.
    """
    r, f = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    origin = r.mean(0)
    stacked = np.concatenate([r, f]) - origin
    if len(stacked) - 1 >= r.shape[1]:
        return r, f
    u, sv, vt = np.linalg.svd(stacked, full_matrices=False)
    keep = sv > sv.max() * 1e-12 if sv.size and sv.max() > 0 else np.zeros_like(sv, dtype=bool)
    basis = vt[keep].T if keep.any() else np.zeros((r.shape[1], 1))
    return (r - origin) @ basis, (f - origin) @ basis


def fid(real: np.ndarray, fake: np.ndarray, project: bool = True) -> float:
    """FID between two feature sets [n, D]: torchmetrics FrechetInceptionDistance on precomputed features.

    With ``project`` (default) the features are first mapped isometrically onto their joint affine hull
    (:func:`affine_hull_projection`), which leaves the value unchanged (tested) but makes torchmetrics'
    D x D eigenvalue problem r x r: seconds instead of a minute for 2048-d features on this CPU.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check_pair(real, fake, 2)
    if project:
        real, fake = affine_hull_projection(real, fake)
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]))
    metric.set_dtype(torch.float64)
    metric.update(torch.from_numpy(np.asarray(real, np.float64)), real=True)
    metric.update(torch.from_numpy(np.asarray(fake, np.float64)), real=False)
    return float(metric.compute())


def kid(real: np.ndarray, fake: np.ndarray, subset_size: int = 50, subsets: int = 100, seed: int = 0) -> dict:
    """KID mean and std over random subsets (torchmetrics KernelInceptionDistance, cubic polynomial kernel).

    ``subset_size`` is lowered to the smaller set's size; the std is across subsets (sampling spread at
    that subset size), which is what the speed-quality curve compares.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    _check_pair(real, fake, 2)
    size = int(min(subset_size, len(real), len(fake)))
    metric = KernelInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(torch.from_numpy(np.asarray(real, np.float32)), real=True)
    metric.update(torch.from_numpy(np.asarray(fake, np.float32)), real=False)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # torchmetrics draws the subsets with the global generator
    try:
        mean, std = metric.compute()
    finally:
        torch.random.set_rng_state(state)
    return {"mean": float(mean), "std": float(std), "subset_size": size, "subsets": subsets}


def frechet_distance(real: np.ndarray, fake: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets, computed directly (scipy.linalg.sqrtm)."""
    _check_pair(real, fake, 2)
    r, f = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    mu1, mu2 = r.mean(0), f.mean(0)
    s1, s2 = np.atleast_2d(np.cov(r, rowvar=False)), np.atleast_2d(np.cov(f, rowvar=False))
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance_lowrank(real: np.ndarray, fake: np.ndarray) -> float:
    """The same Fréchet distance, exact, in O(n^2 D) when n << D (curves over many small sample sets).

    With centred feature matrices A [n1, D], B [n2, D]: S1 S2 = A^T A B^T B / c, whose non-zero eigenvalues
    are those of (A B^T)(A B^T)^T / c, so tr sqrt(S1 S2) = sum of singular values of A B^T / sqrt(c),
    c = (n1 - 1)(n2 - 1). Tested equal to torchmetrics' FID and to :func:`frechet_distance`.
    """
    _check_pair(real, fake, 2)
    r, f = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    a, b = r - r.mean(0), f - f.mean(0)
    c = (len(r) - 1) * (len(f) - 1)
    tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / math.sqrt(c)
    diff = r.mean(0) - f.mean(0)
    tr1 = (a * a).sum() / (len(r) - 1)
    tr2 = (b * b).sum() / (len(f) - 1)
    return float(diff @ diff + tr1 + tr2 - 2.0 * tr_sqrt)


def _kth_nn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(feats, feats)
    # k-th nearest other point: index k in the sorted row (index 0 is the point itself)
    return d.kthvalue(k + 1, dim=1).values


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    precision: share of synthetic features inside the real manifold (union of balls around each real
    feature with radius = distance to its k-th nearest real neighbour); recall: share of real features
    inside the synthetic manifold. Needs more than k points per set.
    """
    _check_pair(real, fake, k + 1)
    r = torch.from_numpy(np.asarray(real, np.float64))
    f = torch.from_numpy(np.asarray(fake, np.float64))
    r_rad, f_rad = _kth_nn_radii(r, k), _kth_nn_radii(f, k)
    d_fr = torch.cdist(f, r)  # [n_fake, n_real]
    precision = (d_fr <= r_rad[None, :]).any(dim=1).double().mean()
    recall = (d_fr.T <= f_rad[None, :]).any(dim=1).double().mean()
    return {"precision": float(precision), "recall": float(recall), "k": k}


#: Per-scale weights of MS-SSIM (Wang et al. 2003), finest first.
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_KERNEL = 11


def ms_ssim_scales(size: int, kernel: int = MS_SSIM_KERNEL) -> int:
    """Most scales (<= 5) torchmetrics' MS-SSIM accepts at ``size`` px: size >= (kernel-1) * max(1, s-1)**2."""
    for s in range(5, 0, -1):
        if size >= (kernel - 1) * max(1, s - 1) ** 2 and size >= 2**s:
            return s
    raise ValueError(f"images of {size} px are too small for MS-SSIM with an {kernel}-px window")


def diversity(images: np.ndarray, pairs: int = 200, seed: int = 0) -> dict:
    """Mean pairwise MS-SSIM of random distinct pairs of gray images [n, H, W] in [0, 1] (lower = more diverse).

    At small sizes the standard 5 scales do not fit; the finest ``s`` scales are used with their betas
    renormalised to sum to 1 (reported as ``scales``).
    """
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    imgs = np.asarray(images, np.float32)
    n = len(imgs)
    if n < 2:
        raise ValueError(f"diversity needs at least 2 images, got {n}")
    s = ms_ssim_scales(min(imgs.shape[1:]))
    betas = tuple(b / sum(MS_SSIM_BETAS[:s]) for b in MS_SSIM_BETAS[:s])
    rng = np.random.default_rng(seed)
    total = n * (n - 1) // 2
    if total <= pairs:
        i, j = np.triu_indices(n, 1)
    else:
        i = rng.integers(0, n, size=pairs * 2)
        j = rng.integers(0, n, size=pairs * 2)
        keep = i != j
        i, j = i[keep][:pairs], j[keep][:pairs]
    x = torch.from_numpy(imgs[i])[:, None]
    y = torch.from_numpy(imgs[j])[:, None]
    vals = []
    for a in range(0, len(i), 64):
        vals.append(ms_ssim(x[a:a + 64], y[a:a + 64], data_range=1.0, kernel_size=MS_SSIM_KERNEL, betas=betas,
                            reduction="none"))
    v = torch.cat(vals).double()
    return {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0, "pairs": int(len(v)),
            "scales": s, "betas": [round(b, 4) for b in betas]}


def _check_pair(real: np.ndarray, fake: np.ndarray, min_n: int) -> None:
    for name, a in (("real", real), ("synthetic", fake)):
        if np.asarray(a).ndim != 2:
            raise ValueError(f"{name} features must be [n, D], got shape {np.shape(a)}")
        if len(a) < min_n:
            raise ValueError(f"{name} set has {len(a)} images; this metric needs at least {min_n}")
    if np.shape(real)[1] != np.shape(fake)[1]:
        raise ValueError(f"feature sizes differ: {np.shape(real)[1]} vs {np.shape(fake)[1]}")


def fid_bias_note(n_real: int, n_fake: int) -> str:
    """A one-line caution for FID computed on few images."""
    n = min(n_real, n_fake)
    if n >= 10_000:
        return ""
    return (f"FID on {n} images is biased upwards (its bias shrinks like 1/n; compare only at equal n); "
            "KID is unbiased")
