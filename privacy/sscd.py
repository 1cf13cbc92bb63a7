"""Candidate generation for the audit's ``copydetect`` method: an SSCD-style copy-detection embedding
trained on the run's own training images.

Where it sits: privacy/copydetect.py trains this network once per audit on the training images, embeds the
training (and holdout) images as references and every query (synthetic, holdout, planted copy), and keeps
each query's top-k references by cosine as the candidates that privacy/align.py then verifies.

Decisions:
- Contrastive (InfoNCE, temperature 0.1) between two augmented views of each training image, as SSCD
  (Pizzi et al. 2022) does, with the augmentations drawn from the same kinds as privacy/power.py's change
  families (rotation, zoom in/out, shear, shift with black fill, blur/sharpen, gamma, window/level,
  brightness/contrast, noise, burned-in glyphs), a little wider than the families so the planted copies lie
  inside the trained range. It learns "same image whatever was done to it" for exactly this image set.
- A small CNN on a 32 px, per-image standardised input (4 stride-2 conv blocks, 128-d output): about a
  second per thousand images to embed on one core; training is a fixed number of steps (not a time budget),
  seeded, on the threads the caller set (the audit sets every core: `cspine audit` in privacy/cli.py). The
  same images, seed and thread count on the same machine give the same network bit for bit (checked twice
  over at 2 threads). Until 2026-12-02 it trained on one thread for reproducibility across thread counts,
  but the network differs between CPUs anyway (their float kernels differ): the same seed measured "everything"
  0.84 on one machine and 0.80 on another in tests/privacy/test_copy_recall.py, and three seeds on one
  machine 0.76-0.80. Two threads train 1.55x faster here (0.080 s against 0.124 s per step).
- The embedding proposes the candidates and weighs in on the decision, which is mostly the aligned pixel
  check's: alone it cannot be thresholded for large geometric changes (measured: distinct images come as
  close as shifted copies), but as a factor of the aligned distance (privacy/copydetect.py) it separates
  the combined changes better than either. Trained 1000 steps, it ranks each planted copy's source first
  or second among 200 training images in every family (200 steps: 88-97% first in the combinations).
"""

from __future__ import annotations

import math

import numpy as np

IN = 32


def _glyph_bank(R: int, n: int, gen) -> "torch.Tensor":
    """``n`` masks [n, 1, R, R] with two glyph strings each (side markers, ID and date text), at random places."""
    import torch
    from PIL import Image, ImageDraw, ImageFont

    size = max(6, R // 8)
    font = ImageFont.load_default(size=size)
    glyphs = []
    for t in ("L", "R", "ID4821", "12/07", "A", "P"):
        im = Image.new("L", (size * len(t), size + 4), 0)
        ImageDraw.Draw(im).text((0, 0), t, fill=255, font=font)
        glyphs.append(torch.from_numpy(np.asarray(im, np.float32) / 255.0))
    bank = torch.zeros(n, 1, R, R)
    for j in range(n):
        for _ in range(2):
            g = glyphs[int(torch.randint(0, len(glyphs), (1,), generator=gen))]
            gh, gw = g.shape
            gh, gw = min(gh, R), min(gw, R)
            y0 = int(torch.randint(0, R - gh + 1, (1,), generator=gen))
            x0 = int(torch.randint(0, R - gw + 1, (1,), generator=gen))
            bank[j, 0, y0:y0 + gh, x0:x0 + gw] = torch.maximum(bank[j, 0, y0:y0 + gh, x0:x0 + gw], g[:gh, :gw])
    return bank


class Augment:
    """Seeded batch augmentation [n, 1, R, R] in [0, 1] -> the same, one random change of each kind."""

    def __init__(self, R: int, seed: int):
        import torch

        self.R = R
        self.gen = torch.Generator().manual_seed(seed)
        self.bank = _glyph_bank(R, 256, self.gen)

    def _u(self, n: int, lo: float, hi: float):
        import torch

        return lo + (hi - lo) * torch.rand(n, generator=self.gen)

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        n, R = len(x), self.R
        u = self._u
        ang = u(n, -6, 6) * math.pi / 180
        zoom = torch.exp(u(n, math.log(0.88), math.log(1.3)))  # < 1 zooms out (black frame), up to 23% crop
        sh, tx, ty = u(n, -0.1, 0.1), u(n, -0.2, 0.2), u(n, -0.2, 0.2)
        c, s = torch.cos(ang) / zoom, torch.sin(ang) / zoom
        theta = torch.stack([torch.stack([c, -s + sh, tx], 1), torch.stack([s, c, ty], 1)], 1)
        grid = F.affine_grid(theta, (n, 1, R, R), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
        # blur (amount < 0) or unsharp mask (amount > 0) with a per-image Gaussian
        sig = u(n, 0.3, 2.0) * R / 64
        k = torch.arange(-4, 5).float() * (R / 64)
        k = torch.exp(-k[None] ** 2 / (2 * sig[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)
        p = k.shape[1] // 2
        xb = F.conv2d(F.pad(x.transpose(0, 1), (p, p, 0, 0), mode="replicate"), k[:, None, None, :], groups=n)
        xb = F.conv2d(F.pad(xb, (0, 0, p, p), mode="replicate"), k[:, None, :, None], groups=n).transpose(0, 1)
        amt = u(n, -1.0, 2.0).view(n, 1, 1, 1)
        x = torch.where(amt < 0, x + (xb - x) * (-amt).clamp(max=1), x + amt * (x - xb))
        # intensity: gamma, window/level, noise
        x = x.clamp(0, 1) ** torch.exp(u(n, math.log(0.55), math.log(1.7))).view(n, 1, 1, 1)
        w, lvl = u(n, 0.6, 1.1).view(n, 1, 1, 1), u(n, -0.15, 0.15).view(n, 1, 1, 1)
        x = (x - 0.5 - lvl) / w + 0.5
        x = x + torch.randn(x.shape, generator=self.gen) * u(n, 0, 0.04).view(n, 1, 1, 1)
        # burned-in glyphs on 2/3 of the views, white or black
        m = self.bank[torch.randint(0, len(self.bank), (n,), generator=self.gen)]
        m = m * (torch.rand(n, generator=self.gen) < 0.67).float().view(n, 1, 1, 1)
        ink = (torch.rand(n, generator=self.gen) < 0.75).float().view(n, 1, 1, 1)
        return (x * (1 - m) + ink * m).clamp(0, 1)


def network(dim: int = 128):
    import torch.nn as nn

    def blk(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

    return nn.Sequential(nn.AdaptiveAvgPool2d(IN), blk(1, 32), blk(32, 64), blk(64, 128), blk(128, 128),
                         nn.Flatten(), nn.Linear(128 * (IN // 16) ** 2, dim))


def _standardise(x):
    return (x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 1e-3)


def train(images: np.ndarray, steps: int, seed: int, batch: int = 128):
    """Train the embedding on float32 images [n, R, R] in [0, 1] for ``steps`` steps; returns the network (eval)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    net = network()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    aug = Augment(images.shape[-1], seed)
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None]
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=gen)[:batch]
        if len(idx) < 2:
            break
        z = F.normalize(net(_standardise(torch.cat([aug(x[idx]), aug(x[idx])]))), dim=1)
        sim = z @ z.T / 0.1
        sim.fill_diagonal_(-1e9)
        n = len(idx)
        loss = F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net


def embed(net, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Unit-norm float32 embeddings [n, 128] of float32 images [n, R, R] in [0, 1]."""
    import torch
    import torch.nn.functional as F

    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch], np.float32))[:, None]
            out.append(F.normalize(net(_standardise(x)), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)
