"""The in-memory batch loader: uint8 images in one tensor, augmented per batch on tensors.

No per-image Python or PIL work happens in the training loop: a batch is one index gather, one random
translation (a gather into a reflect-padded copy made once), one masked flip and an optional cutout.
The model normalises the uint8 batch itself (see ``imgclf.models.ImageClassifier``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Augment:
    flip: bool = False  # random horizontal flip, p = 0.5
    translate: int = 0  # px, random shift in [-translate, translate] on both axes, reflect-padded
    cutout: int = 0  # px, side of a square set to the fill value; 0 = off

    @property
    def active(self) -> bool:
        return self.flip or self.translate > 0 or self.cutout > 0


def _reflect_pad(images: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")


def random_translate(padded: torch.Tensor, size: tuple[int, int], pad: int, gen: torch.Generator) -> torch.Tensor:
    """Crop each image of a reflect-padded batch at its own random offset in [0, 2*pad]."""
    n, c = padded.shape[:2]
    h, w = size
    dev = padded.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(dev)
    rows = (torch.arange(h, device=dev)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=dev)[None, :] + dx[:, None])[:, None, None, :]
    return padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows, cols]


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = (torch.rand(len(x), generator=gen, device=gen.device) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def random_cutout(x: torch.Tensor, side: int, fill: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Set a random ``side`` x ``side`` square (clipped at the border) of each image to ``fill`` (C,)."""
    n, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (n,), generator=gen, device=gen.device).to(dev)[:, None]
    cx = torch.randint(0, w, (n,), generator=gen, device=gen.device).to(dev)[:, None]
    ys, xs = torch.arange(h, device=dev)[None, :], torch.arange(w, device=dev)[None, :]
    in_y = (ys >= cy - side // 2) & (ys < cy - side // 2 + side)
    in_x = (xs >= cx - side // 2) & (xs < cx - side // 2 + side)
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    return torch.where(mask, fill.view(1, -1, 1, 1).to(device=dev, dtype=x.dtype), x)


class BatchLoader:
    """Yields (uint8 images, int64 labels) batches from arrays held in memory.

    Shuffling and augmentation draw from a generator seeded by (seed, epoch), so a run resumed at an epoch
    sees the same batches as an uninterrupted one. With ``world_size`` > 1 each rank takes every
    ``world_size``-th sample of the shared permutation, padded so all ranks run the same number of steps.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = False,
                 augment: Augment | None = None, seed: int = 0, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, fill: np.ndarray | None = None, device: str | torch.device | None = None):
        # on a GPU the whole dataset lives in device memory and is augmented there: no host work per step
        self.device = torch.device(device or "cpu")
        self.augment = augment or Augment()
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        self.size = tuple(images.shape[-2:])
        pad = self.augment.translate
        self.padded = torch.from_numpy(_reflect_pad(np.asarray(images), pad)).to(self.device) if pad > 0 else None
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch, self.rank, self.world_size = seed, 0, rank, world_size
        fill = np.zeros(images.shape[1]) if fill is None else fill
        self.fill = torch.as_tensor(np.round(fill), dtype=torch.uint8)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            idx = torch.randperm(n, generator=gen)
        else:
            idx = torch.arange(n)
        if self.world_size > 1:
            per_rank = math.ceil(n / self.world_size)
            idx = torch.cat([idx, idx[: per_rank * self.world_size - n]])  # pad by wrapping, like DistributedSampler
            idx = idx[self.rank :: self.world_size]
        return idx.to(self.device)

    def __len__(self) -> int:
        n = math.ceil(len(self.labels) / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        idx = self._indices()
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 7_919 + self.epoch * 31 + self.rank + 1)
        for b in range(len(self)):
            batch = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self._augment(batch, gen), self.labels[batch]
        self.epoch += 1

    def _augment(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        aug = self.augment
        if aug.translate > 0:
            x = random_translate(self.padded[batch], self.size, aug.translate, gen)
        else:
            x = self.images[batch]
        if aug.flip:
            x = random_flip(x, gen)
        if aug.cutout > 0:
            x = random_cutout(x, aug.cutout, self.fill, gen)
        return x
