"""Mixup and CutMix on a batch, with soft (smoothed, mixed) targets.

Mixup: x = lam * x_i + (1 - lam) * x_j (Zhang et al., 2018). CutMix: a box of x_j pasted into x_i, lam = the
share of x_i's pixels that remain (Yun et al., 2019). With both enabled, each batch uses one of them at random.
"""

from __future__ import annotations

import math

import torch


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot targets with label smoothing: 1 - s + s/K on the class, s/K elsewhere."""
    off = smoothing / num_classes
    return torch.full((len(y), num_classes), off, device=y.device).scatter_(1, y[:, None], 1 - smoothing + off)


def cutmix_box(h: int, w: int, lam: float, gen: torch.Generator) -> tuple[int, int, int, int]:
    """A box of area about (1 - lam) * h * w at a uniform random centre, clipped to the image."""
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(0, h, (1,), generator=gen)), int(torch.randint(0, w, (1,), generator=gen))
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float, cutmix: float, smoothing: float,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed images as float, soft targets (N, K)) for one batch; alphas of 0 turn a method off."""
    targets = soft_targets(y, num_classes, smoothing)
    methods = [m for m, a in (("mixup", mixup), ("cutmix", cutmix)) if a > 0]
    if not methods:
        return x, targets
    method = methods[int(torch.randint(0, len(methods), (1,), generator=gen))]
    alpha = mixup if method == "mixup" else cutmix
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(y), generator=gen).to(y.device)
    x = x.float()
    if method == "mixup":
        mixed = lam * x + (1 - lam) * x[perm]
    else:
        h, w = x.shape[-2:]
        y0, y1, x0, x1 = cutmix_box(h, w, lam, gen)
        mixed = x.clone()
        mixed[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the share actually kept
    return mixed, lam * targets + (1 - lam) * targets[perm]
