"""Tiny synthetic image folders and trained runs shared by the report, explain and compare tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("car", "ship", "cat", "dog")
GROUPING = "vehicle: [car, ship]\nanimal: [cat, dog]\n"


def make_folder_dataset(root: Path, per_class: int = 15, size: tuple[int, int] = (20, 16), seed: int = 0) -> Path:
    """One sub-folder per class of small PNGs whose mean colour depends on the class (learnable in one epoch)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 90, (size[1], size[0], 3), dtype=np.uint8)
            a[..., c % 3] += np.uint8(90 + 60 * (c // 3))
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


def train_tiny(data: Path, runs_dir: Path, name: str, grouped: bool = False, **overrides):
    """A 1-epoch cnn3 run at 16 px (a few seconds); ``grouped`` trains vehicles vs animals."""
    from imgclf.training.api import train

    kwargs = dict(dataset=f"folder:{data}", image_size=16, epochs=1, model="cnn3", runs_dir=str(runs_dir),
                  name=name, progress=False, val_fraction=0.2, threads=2)
    if grouped:
        grouping = data.parent / "grouping.yaml"
        grouping.write_text(GROUPING)
        kwargs["classes"] = str(grouping)
    kwargs.update(overrides)
    return train(**kwargs)
