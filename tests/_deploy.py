"""Shared by the deployment tests: one tiny trained run per test session, and image helpers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

_CACHE: dict[str, Path] = {}
COLORS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def random_image(seed: int, size: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array(COLORS[seed % 3], dtype=np.float64)
    return (rng.normal(0, 50, (size, size + 4, 3)) + base).clip(0, 255).astype(np.uint8)


def make_folder(root: Path, per_class: int = 15) -> Path:
    """Three colour classes of small noisy PNGs (sizes differ from the model's, so resizing is exercised)."""
    for c in range(3):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (d / f"{i}.png").write_bytes(png_bytes(random_image(c + 3 * i)))
    return root


def trained_run(tmp_path_factory) -> Path:
    """A cnn3 run trained for one epoch at 16 px (a few seconds), shared by every deployment test module."""
    if "run" not in _CACHE:
        from imgclf.training.api import train

        base = tmp_path_factory.mktemp("deploy")
        data = make_folder(base / "data")
        result = train(dataset=f"folder:{data}", image_size=16, epochs=1, model="cnn3", runs_dir=str(base / "runs"),
                       name="t", progress=False, val_fraction=0.2, batch_size=16)
        _CACHE["run"], _CACHE["data"] = result.run_dir, data
    return _CACHE["run"]


def data_folder(tmp_path_factory) -> Path:
    trained_run(tmp_path_factory)
    return _CACHE["data"]
