"""The Lightning DataModule: owns the splits, the normalisation statistics and the batch loaders."""

from __future__ import annotations

import lightning as L
import numpy as np

from imgclf.data.dataset import Splits
from imgclf.data.loader import Augment, BatchLoader


def channel_stats(images: np.ndarray, max_images: int = 10_000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in 0..1 units, from at most ``max_images`` evenly spaced images."""
    if images.ndim != 4:  # feature vectors (cached linear probe): nothing to normalise
        return [0.0], [1.0]
    step = max(1, len(images) // max_images)
    sample = np.asarray(images[::step], dtype=np.float32) / 255.0
    return sample.mean(axis=(0, 2, 3)).tolist(), (sample.std(axis=(0, 2, 3)) + 1e-6).tolist()


class ImageDataModule(L.LightningDataModule):
    """Serves train/val/test batches of uint8 images from memory; each rank gets its own shard of training."""

    def __init__(self, splits: Splits, batch_size: int, augment: Augment, seed: int, eval_batch_size: int = 1024):
        super().__init__()
        self.splits, self.batch_size, self.augment, self.seed = splits, batch_size, augment, seed
        self.eval_batch_size = eval_batch_size
        self.mean, self.std = channel_stats(splits.train.images)
        self._train: BatchLoader | None = None

    def steps_per_epoch(self, world_size: int = 1) -> int:
        return len(self._make_train(0, world_size))

    def _device(self):
        """The GPU this process trains on, so the data can live there; None on a CPU."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else None
        return device if device is not None and device.type == "cuda" else None

    def _make_train(self, rank: int, world_size: int, device=None) -> BatchLoader:
        fill = np.array(self.mean) * 255.0
        drop_last = len(self.splits.train) // world_size > self.batch_size
        return BatchLoader(self.splits.train.images, self.splits.train.labels, self.batch_size, shuffle=True,
                           augment=self.augment, seed=self.seed, drop_last=drop_last, rank=rank,
                           world_size=world_size, fill=fill, device=device)

    def train_dataloader(self) -> BatchLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        self._train = self._make_train(rank, world, self._device())
        if trainer is not None:
            self._train.set_epoch(trainer.current_epoch)
        return self._train

    def set_epoch(self, epoch: int) -> None:
        if self._train is not None:
            self._train.set_epoch(epoch)

    def val_dataloader(self):
        val = self.splits.val
        if val is None or len(val) == 0:
            return []
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return BatchLoader(val.images, val.labels, self.eval_batch_size, rank=rank, world_size=world,
                           device=self._device())
