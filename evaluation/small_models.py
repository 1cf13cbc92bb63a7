"""Small CNNs the evaluation trains on gray radiographs: an image classifier and a 23-point landmark detector.

Where it sits: evaluation/, used by the label-fidelity metrics of `cspine evaluate` (evaluation.fidelity:
networks trained on real training images score synthetic ones) and meant for the utility evaluation
(train on synthetic, test on real), which needs the same networks with other training sets. Functions
here take arrays and return arrays or a trained module; they read and write no files.

Decisions:
- Inputs are standardised per image (zero mean, unit std) before the network sees them
  (:func:`standardise`). The networks measure *labels* (curvature class, landmark positions), not global
  brightness or contrast, which the distribution metrics (FID/KID, the two-sample test) already judge; a
  synthetic set with slightly lower contrast should not lose label fidelity for that alone.
- Training augments with random integer shifts (up to ``shift`` px, the same for image and keypoints,
  edges replicated) and nothing else: no flips (the patient faces left in every CSXA image, and a flip
  would swap anterior and posterior corners) and no rotations (they would change the curvature).
- The landmark detector is a tiny U-Net (64 -> 8 px and back to 32 px) with two coordinate channels
  (CoordConv): the vertebrae look alike, so telling C4 from C5 needs the context of the coarse levels and
  where in the crop a body lies. Each of the 23 heatmaps is turned into a position by soft-argmax
  (integral regression, Sun et al. 2018) and trained with an L1 loss on pixel coordinates, so the error
  it minimises is the radial error the metric reports, with sub-cell precision.
- Everything is seeded: the weights' initialisation (torch.manual_seed), batch order and shifts (a numpy
  Generator). The same inputs and seed give the same network on one machine and thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TrainSettings:
    """How a network is trained: epochs, batch size, Adam learning rate, augmentation shift (px), seed."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    shift: int = 3
    seed: int = 0


def standardise(images: np.ndarray) -> torch.Tensor:
    """float32 tensor ``[n, 1, H, W]`` from gray images ``[n, H, W]`` (any dtype), each at zero mean and unit std."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected gray images [n, H, W], got shape {x.shape}")
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return torch.from_numpy((x - mean) / np.maximum(std, 1e-6))[:, None]


def shift_batch(x: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Each image ``x[i]`` ([n, 1, H, W]) moved by integer ``shifts[i] = (dx, dy)`` px, edges replicated."""
    if not len(shifts):
        return x
    m = int(np.abs(shifts).max())
    if m == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (m, m, m, m), mode="replicate")
    out = torch.empty_like(x)
    for i, (dx, dy) in enumerate(np.asarray(shifts, dtype=np.int64)):
        out[i] = padded[i, :, m - dy:m - dy + h, m - dx:m - dx + w]
    return out


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _coords(x: torch.Tensor) -> torch.Tensor:
    """``x`` with two extra channels: its pixel's x and y position scaled to [-1, 1]."""
    n, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
    xs = torch.linspace(-1, 1, w, dtype=x.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
    return torch.cat([x, xs, ys], dim=1)


class Classifier(nn.Module):
    """Input area-resized to ``size`` px (a curve is a coarse shape: 32 px keep it at a quarter of the cost of
    64), three conv blocks (each halving the size), pooled to 4 x 4 (keeps where things are: a curve's shape
    is spatial), dropout, linear: logits ``[n, classes]``. About 30k weights at ``width`` 16."""

    def __init__(self, classes: int, width: int = 16, size: int | None = 32) -> None:
        super().__init__()
        w = width
        self.size = size
        self.features = nn.Sequential(_block(3, w), nn.MaxPool2d(2), _block(w, 2 * w), nn.MaxPool2d(2),
                                      _block(2 * w, 2 * w), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * w * 16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area")
        return self.head(self.features(_coords(x)))


class LandmarkNet(nn.Module):
    """Tiny U-Net: ``points`` heatmaps at half the input size, soft-argmax to ``[n, points, 2]`` (x, y) in
    input pixel coordinates (pixel centres at integers, as data/index.parquet's keypoints)."""

    def __init__(self, points: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.points = points
        self.enc1, self.enc2, self.enc3 = _block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.bottom = _block(4 * w, 4 * w)
        self.dec3, self.dec2 = _block(8 * w, 2 * w), _block(4 * w, 2 * w)
        self.out = nn.Conv2d(2 * w, points, 1)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(_coords(x))                     # H
        e2 = self.enc2(F.max_pool2d(e1, 2))            # H/2
        e3 = self.enc3(F.max_pool2d(e2, 2))            # H/4
        b = self.bottom(F.max_pool2d(e3, 2))           # H/8
        d3 = self.dec3(torch.cat([F.interpolate(b, scale_factor=2.0), e3], 1))   # H/4
        d2 = self.dec2(torch.cat([F.interpolate(d3, scale_factor=2.0), e2], 1))  # H/2
        return self.out(d2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hm = self.heatmaps(x)
        n, k, h, w = hm.shape
        p = torch.softmax(hm.flatten(2), dim=-1).view(n, k, h, w)
        sy, sx = x.shape[-2] / h, x.shape[-1] / w
        # centre of heatmap cell j in input pixels (pixel centres at integers)
        gx = (torch.arange(w, dtype=p.dtype) + 0.5) * sx - 0.5
        gy = (torch.arange(h, dtype=p.dtype) + 0.5) * sy - 0.5
        px = (p.sum(2) * gx).sum(-1)
        py = (p.sum(3) * gy).sum(-1)
        return torch.stack([px, py], dim=-1)


def _shifts(rng: np.random.Generator, n: int, shift: int) -> np.ndarray:
    return rng.integers(-shift, shift + 1, size=(n, 2)) if shift > 0 else np.zeros((n, 2), np.int64)


def train_classifier(images: np.ndarray, labels: np.ndarray, classes: int, settings: TrainSettings = TrainSettings(),
                     width: int = 16, size: int | None = 32, class_weights: bool = True) -> Classifier:
    """A :class:`Classifier` trained on gray ``images`` [n, H, W] with integer ``labels`` in 0..classes-1.

    With ``class_weights`` the cross-entropy weighs each class by n / (classes * count) (absent classes 0),
    so a rare class (reverse sigmoid is 10% of the CSXA set) is not traded for the common ones."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(images) or len(y) < 2:
        raise ValueError(f"need >= 2 images with one label each, got {len(images)} images, {len(y)} labels")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"labels must be in 0..{classes - 1}, got {y.min()}..{y.max()}")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    x, yt = standardise(images), torch.from_numpy(y)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weight = np.where(counts > 0, len(y) / (classes * np.maximum(counts, 1)), 0.0) if class_weights else np.ones(classes)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32))
    net = Classifier(classes, width, size)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=settings.epochs * _batches(len(y), settings))
    net.train()
    for _ in range(settings.epochs):
        for idx in _batch_order(rng, len(y), settings):
            xb = shift_batch(x[idx], _shifts(rng, len(idx), settings.shift))
            opt.zero_grad()
            loss_fn(net(xb), yt[idx]).backward()
            opt.step()
            sched.step()
    return net.eval()


def predict_proba(net: Classifier, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Class probabilities ``[n, classes]`` of ``images`` (float64)."""
    x = standardise(images)
    out = []
    with torch.no_grad():
        for a in range(0, len(x), batch_size):
            out.append(torch.softmax(net(x[a:a + batch_size]), dim=-1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.head[-1].out_features))


def train_landmarks(images: np.ndarray, keypoints: np.ndarray, settings: TrainSettings = TrainSettings(),
                    width: int = 16) -> LandmarkNet:
    """A :class:`LandmarkNet` trained on ``images`` [n, H, W] and ``keypoints`` [n, K, 2] (x, y pixels; NaN
    where a point is missing: left out of the loss). L1 loss on coordinates."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[2] != 2 or len(kp) != len(images) or len(kp) < 2:
        raise ValueError(f"need >= 2 images with keypoints [n, K, 2], got {len(images)} images, keypoints {kp.shape}")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    x = standardise(images)
    mask = torch.from_numpy(np.isfinite(kp).all(-1))
    target = torch.from_numpy(np.nan_to_num(kp))
    net = LandmarkNet(kp.shape[1], width)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=settings.epochs * _batches(len(kp), settings))
    net.train()
    for _ in range(settings.epochs):
        for idx in _batch_order(rng, len(kp), settings):
            s = _shifts(rng, len(idx), settings.shift)
            xb = shift_batch(x[idx], s)
            tb = target[idx] + torch.from_numpy(s.astype(np.float32))[:, None, :]
            mb = mask[idx]
            opt.zero_grad()
            err = (net(xb) - tb).abs().sum(-1)
            (err * mb).sum().div(mb.sum().clamp(min=1)).backward()
            opt.step()
            sched.step()
    return net.eval()


def predict_landmarks(net: LandmarkNet, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Predicted keypoints ``[n, K, 2]`` (x, y pixels, float64) of ``images``."""
    x = standardise(images)
    out = []
    with torch.no_grad():
        for a in range(0, len(x), batch_size):
            out.append(net(x[a:a + batch_size]).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.points, 2))


def _batches(n: int, s: TrainSettings) -> int:
    return max(1, -(-n // s.batch_size))


def _batch_order(rng: np.random.Generator, n: int, s: TrainSettings) -> list[np.ndarray]:
    """Shuffled batches; a last batch of one image is merged into the one before (BatchNorm needs two)."""
    order = rng.permutation(n)
    batches = [order[a:a + s.batch_size] for a in range(0, n, s.batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = np.concatenate([batches[-2], batches.pop()])
    return batches
