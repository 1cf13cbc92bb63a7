"""Can real and synthetic images be told apart? Simple image statistics and a classifier two-sample test.

Shared core (it imports no stage): the reader study's blinding check (reader_study.blinding, run by
`cspine study build` on the exact files it will serve) and the quality metrics (`cspine evaluate`) both
use it.

- :func:`image_statistics`: per image, the statistics a shortcut could use instead of the anatomy: border
  and corner intensity, share of black and of saturated pixels, mean, contrast (std), histogram skewness
  and entropy, high-frequency energy and (when given) the file size.
- :func:`extreme_rules`: for each statistic and direction, the rule "in each trial, pick the image with
  the highest (lowest) value as the real one": its hit rate against chance 1/k with a one-sided exact
  binomial test, Holm-adjusted over all rules (so that trying 2 x 10 rules does not by itself find a
  "tell"). Ties split the hit (a rule that cannot decide scores chance).
- :func:`statistic_aucs`: per statistic, the AUC of real against synthetic over all images (0.5 = no
  separation; 0 or 1 = perfect).
- :func:`c2st`: the classifier two-sample test (Lopez-Paz & Oquab 2017): a small CNN trained to tell the
  two sets apart under stratified k-fold cross-validation; every image is scored by a network that never
  saw it, and the AUC of those scores comes with a DeLong 95% interval. About 0.5 means the classifier
  finds no difference; near 1 means the sets are separable. Images are scaled to [0, 1] and resized to a
  small square (default 32 px) *without* per-image normalisation, so brightness and borders stay
  visible to it. It is deliberately tiny (three conv layers): a few seconds on a CPU for ~100 images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pydantic import Field
from scipy import stats as sps

from cspine.config import Strict
from cspine.images import to_unit

#: Statistic names, in report order, with what each measures.
STATISTICS: dict[str, str] = {
    "border_mean": "mean intensity of the outer band (1/32 of the side, at least 1 px)",
    "corner_mean": "mean intensity of the four corner squares (1/8 of the side)",
    "black_share": "share of pixels at the lowest value (exact black)",
    "saturated_share": "share of pixels at the highest value (saturated white)",
    "mean": "mean intensity",
    "std": "contrast: standard deviation of intensity",
    "skewness": "histogram skewness",
    "entropy": "histogram entropy (256 bins, bits)",
    "hf_energy": "share of spectral energy above half the Nyquist frequency",
    "file_size": "bytes of the served file",
}


class C2STConfig(Strict):
    """Settings of the classifier two-sample test (cspine.twosample.c2st)."""

    enabled: bool = Field(True, description="Run the classifier two-sample test.")
    size: int = Field(32, ge=8, le=256, description="Images are resized to this square size for the CNN (multiple of 8).")
    folds: int = Field(5, ge=2, le=20, description="Stratified cross-validation folds; every image is scored out of fold.")
    epochs: int = Field(20, ge=1, description="Training epochs per fold.")
    max_images: int = Field(2000, ge=4, description="Cap on images per set (random subset).")
    seed: int = Field(0, description="Seed of the folds, the network's initialisation and batch order.")


# -- statistics ---------------------------------------------------------------------------------------------

def _one(img: np.ndarray) -> dict[str, float]:
    top = {np.uint8: 255, np.uint16: 65535}.get(img.dtype.type)
    u = to_unit(img).astype(np.float64)
    h, w = u.shape
    b = max(1, round(min(h, w) / 32))
    c = max(2, min(h, w) // 8)
    border = np.concatenate([u[:b].ravel(), u[-b:].ravel(), u[b:-b, :b].ravel(), u[b:-b, -b:].ravel()])
    corners = np.concatenate([u[:c, :c].ravel(), u[:c, -c:].ravel(), u[-c:, :c].ravel(), u[-c:, -c:].ravel()])
    if top is not None:
        # integer pixels: the histogram statistics come from the value counts, so that two images with the
        # same histogram get exactly the same values (a sum over pixels in another order need not)
        counts = np.bincount(img.ravel(), minlength=top + 1)
        levels = np.arange(top + 1, dtype=np.float64) / top
        p = counts / img.size
        mean = float(p @ levels)
        std = float(np.sqrt(p @ (levels - mean) ** 2))
        skew = float(p @ (levels - mean) ** 3) / std ** 3 if std > 0 else 0.0
        black, sat = float(p[0]), float(p[-1])
        hist = np.bincount(np.minimum((levels * 256).astype(int), 255), weights=counts, minlength=256) / img.size
    else:
        mean, std = float(u.mean()), float(u.std())
        skew = float(sps.skew(u.ravel())) if std > 0 else 0.0
        black, sat = float((u <= 0).mean()), float((u >= 1).mean())
        hist = np.histogram(u, bins=256, range=(0.0, 1.0))[0] / u.size
    nz = hist[hist > 0]
    power = np.abs(np.fft.fft2(u - u.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fx, fy)
    total = power.sum()
    return {
        "border_mean": float(border.mean()),
        "corner_mean": float(corners.mean()),
        "black_share": black,
        "saturated_share": sat,
        "mean": mean,
        "std": std,
        "skewness": skew,
        "entropy": float(-(nz * np.log2(nz)).sum()),
        "hf_energy": float(power[radius > 0.25].sum() / total) if total > 0 else 0.0,
    }


def image_statistics(images: Sequence[np.ndarray], file_sizes: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Each statistic of :data:`STATISTICS` for every image (2-D uint8/uint16, or float in [0, 1]).
    ``file_size`` is included only when ``file_sizes`` is given."""
    rows = [_one(np.asarray(im)) for im in images]
    out = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in STATISTICS if k != "file_size"}
    if file_sizes is not None:
        out["file_size"] = np.asarray(file_sizes, dtype=np.float64)
    return out


# -- rules and AUCs -----------------------------------------------------------------------------------------

def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def extreme_rules(values: dict[str, np.ndarray], trials: Sequence[Sequence[int]], real_positions: Sequence[int]) -> list[dict]:
    """The "pick the extreme" rule per statistic and direction over ``trials`` (each a list of image indices
    into ``values``, the real one at ``real_positions[t]``). Returns one row per rule: hits (ties split),
    hit rate, chance, one-sided binomial p and its Holm adjustment over all rules."""
    rows = []
    n = len(trials)
    ks = {len(t) for t in trials}
    chance = float(np.mean([1.0 / len(t) for t in trials])) if n else float("nan")
    for name, v in values.items():
        for direction in ("highest", "lowest"):
            hits = 0.0
            for idx, real in zip(trials, real_positions):
                x = v[np.asarray(idx)]
                best = x.max() if direction == "highest" else x.min()
                winners = np.flatnonzero(np.isclose(x, best, rtol=0, atol=1e-12))
                hits += (1.0 / len(winners)) if real in winners else 0.0
            k_hits = int(round(hits))
            p = float(sps.binomtest(k_hits, n, chance, alternative="greater").pvalue) if n else 1.0
            rows.append({"statistic": name, "rule": f"pick the {direction}", "hits": round(hits, 3), "trials": n,
                         "hit_rate": hits / n if n else float("nan"), "chance": chance, "p_binomial": p})
    if rows:
        for r, a in zip(rows, _holm(np.array([r["p_binomial"] for r in rows]))):
            r["p_holm"] = float(a)
    if len(ks) > 1:
        for r in rows:
            r["note"] = "trials of different sizes: chance is their mean"
    return rows


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a ``pos`` value > a ``neg`` value) + P(tie)/2 (the Mann-Whitney AUC)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = sps.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def delong_interval(pos: np.ndarray, neg: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """AUC of ``pos`` over ``neg`` and its DeLong (1988) confidence interval (normal, clipped to [0, 1])."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    m, n = len(pos), len(neg)
    psi = (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
    a = float(psi.mean())
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    z = float(sps.norm.ppf(0.5 + level / 2))
    half = z * float(np.sqrt(max(var, 0.0)))
    return a, max(0.0, a - half), min(1.0, a + half)


def statistic_aucs(values: dict[str, np.ndarray], is_real: np.ndarray) -> dict[str, dict]:
    """Per statistic: AUC of real over synthetic (0.5 = none) and the separation max(AUC, 1 - AUC)."""
    is_real = np.asarray(is_real, bool)
    out = {}
    for name, v in values.items():
        a = auc(v[is_real], v[~is_real])
        out[name] = {"auc_real_higher": a, "separation": max(a, 1 - a)}
    return out


# -- classifier two-sample test -----------------------------------------------------------------------------

@dataclass
class C2STResult:
    """AUC (with DeLong interval) of out-of-fold scores; ``scores_*`` are P(image is from set b)."""

    auc: float
    ci_low: float
    ci_high: float
    n_a: int
    n_b: int
    settings: dict
    scores_a: np.ndarray = field(repr=False)
    scores_b: np.ndarray = field(repr=False)

    def to_json(self) -> dict:
        return {"auc": round(self.auc, 4), "ci95": [round(self.ci_low, 4), round(self.ci_high, 4)],
                "n_a": self.n_a, "n_b": self.n_b, **self.settings}


def _to_tensor(images: np.ndarray, size: int):
    import torch
    import torch.nn.functional as F

    unit = np.stack([to_unit(np.asarray(im)) for im in images]).astype(np.float32)
    x = torch.from_numpy(unit)[:, None]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x - 0.5


def _network(size: int):
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * (size // 8) ** 2, 1),
    )


def _folds(n_a: int, n_b: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified fold of every image (a's first, then b's)."""
    fa = rng.permutation(np.arange(n_a) % k)
    fb = rng.permutation((np.arange(n_b) + n_a) % k)  # continue the rotation so small folds stay balanced
    return np.concatenate([fa, fb])


def c2st(a: Sequence[np.ndarray] | np.ndarray, b: Sequence[np.ndarray] | np.ndarray, *, size: int = 32, folds: int = 5,
         epochs: int = 20, seed: int = 0, batch_size: int = 32, lr: float = 2e-3) -> C2STResult:
    """Classifier two-sample test of image sets ``a`` (e.g. real) and ``b`` (e.g. synthetic); see the module
    docstring. Needs at least ``folds`` images in each set."""
    import torch

    n_a, n_b = len(a), len(b)
    if size % 8:
        raise ValueError(f"c2st size must be a multiple of 8, got {size}")
    if min(n_a, n_b) < folds:
        raise ValueError(f"c2st needs at least {folds} images per set (got {n_a} and {n_b})")
    x = torch.cat([_to_tensor(np.asarray(a), size), _to_tensor(np.asarray(b), size)])
    y = torch.cat([torch.zeros(n_a), torch.ones(n_b)])
    rng = np.random.default_rng(seed)
    fold_of = _folds(n_a, n_b, folds, rng)
    scores = np.zeros(n_a + n_b)
    for f in range(folds):
        test = np.flatnonzero(fold_of == f)
        train = np.flatnonzero(fold_of != f)
        torch.manual_seed(seed * 1000 + f)
        net = _network(size)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
        pos = float(y[train].sum())
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(train) - pos) / max(pos, 1.0)))
        order_rng = np.random.default_rng(seed * 1000 + f)
        net.train()
        for _ in range(epochs):
            perm = train[order_rng.permutation(len(train))]
            for s in range(0, len(perm), batch_size):
                idx = torch.from_numpy(perm[s:s + batch_size])
                opt.zero_grad()
                loss = loss_fn(net(x[idx]).squeeze(1), y[idx])
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            scores[test] = torch.sigmoid(net(x[torch.from_numpy(test)]).squeeze(1)).numpy()
    value, lo, hi = delong_interval(scores[n_a:], scores[:n_a])
    settings = {"size": size, "folds": folds, "epochs": epochs, "seed": seed, "interval": "DeLong 95%",
                "network": "3 conv layers (8-16-16) + linear, trained per fold (Adam)"}
    return C2STResult(value, lo, hi, n_a, n_b, settings, scores[:n_a], scores[n_a:])
