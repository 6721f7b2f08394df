"""Prediction on new images with the run's own preprocessing contract.

Examples:
    >>> p = Predictor("runs/c10")  # doctest: +SKIP
    >>> p.predict(["cat.jpg"], top_k=3)[0]["label"]  # doctest: +SKIP
    'cat'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imgclf.data.images import IMAGE_EXTENSIONS, ImageError, PreprocessSpec, from_array, load_for_model
from imgclf.errors import ImgclfError

ImageInput = str | Path | bytes | np.ndarray | Image.Image


def expand_inputs(items: Iterable[str | Path], pattern: str = "*") -> list[Path]:
    """Files as given, and the image files of folders (recursive, filtered by the glob ``pattern``)."""
    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob(pattern) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            out.append(p)
    return out


class Predictor:
    """Top-k predictions from a run folder (best seed of a group) or a ``model.pt`` file.

    Args:
        source: run folder, run name under ``runs_dir``, or model file.
        tta: average over mirrored views (default: what the run was evaluated with).
        batch_size: images per forward pass.
        max_pixels: override the run's decompression-bomb limit.
    """

    def __init__(self, source: str | Path, tta: bool | None = None, batch_size: int = 64,
                 max_pixels: int | None = None, device: str = "cpu", runs_dir: str | Path = "runs"):
        from imgclf.models.io import load_model
        from imgclf.runs import model_file

        path = Path(source)
        if not path.exists() and (Path(runs_dir) / path).exists():
            path = Path(runs_dir) / path
        self.model, self.meta = load_model(model_file(path), map_location=device)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.classes: list[str] = self.meta["classes"]
        spec = PreprocessSpec.from_dict(self.meta["preprocess"])
        self.spec = spec if max_pixels is None else PreprocessSpec(**{**spec.to_dict(), "max_pixels": max_pixels})
        flip_ok = self.meta.get("flip", True)
        if tta is None:  # what the run was evaluated with
            from imgclf.evaluation.evaluate import tta_level

            self.tta_level = tta_level({**self.meta, "flip": flip_ok})
        else:
            self.tta_level = 1 if tta and flip_ok else 0
        self.batch_size = batch_size

    def preprocess(self, item: ImageInput, name: str | None = None) -> np.ndarray:
        """One input (path, bytes, PIL image or array) to the uint8 (C, H, W) array the model takes."""
        if isinstance(item, np.ndarray | Image.Image):
            return from_array(item, self.spec)
        return load_for_model(item, self.spec, name=name)

    @torch.inference_mode()
    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, K) for preprocessed uint8 arrays (N, C, H, W)."""
        from imgclf.models import tta_logits

        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        return torch.softmax(tta_logits(self.model, x, self.tta_level).float(), dim=1).cpu().numpy()

    def _result(self, name: str, probs: np.ndarray, top_k: int) -> dict[str, Any]:
        order = np.argsort(-probs, kind="stable")[: max(1, min(top_k, len(self.classes)))]
        top = [{"label": self.classes[i], "probability": round(float(probs[i]), 6)} for i in order]
        return {"input": name, "label": top[0]["label"], "probability": top[0]["probability"], "top_k": top}

    def iter_predict(self, inputs: Iterable[ImageInput], top_k: int = 5) -> Iterator[dict[str, Any]]:
        """Yield one result per input, in order; a bad input yields ``{"input", "error"}`` and the rest go on."""
        pending: list[tuple[str, np.ndarray]] = []
        for i, item in enumerate(inputs):
            name = str(item) if isinstance(item, str | Path) else f"<input {i}>"
            try:
                pending.append((name, self.preprocess(item, name=name)))
            except ImageError as exc:
                yield from self._flush(pending, top_k)
                pending = []
                yield {"input": name, "error": str(exc)}
                continue
            if len(pending) >= self.batch_size:
                yield from self._flush(pending, top_k)
                pending = []
        yield from self._flush(pending, top_k)

    def _flush(self, pending: list[tuple[str, np.ndarray]], top_k: int) -> Iterator[dict[str, Any]]:
        if not pending:
            return
        probs = self.predict_arrays(np.stack([a for _, a in pending]))
        for (name, _), p in zip(pending, probs, strict=True):
            yield self._result(name, p, top_k)

    def predict(self, inputs: ImageInput | Iterable[ImageInput], top_k: int = 5) -> list[dict[str, Any]]:
        """Predictions for one input or many; see ``iter_predict``."""
        if isinstance(inputs, str | Path | bytes | np.ndarray | Image.Image):
            inputs = [inputs]
        return list(self.iter_predict(inputs, top_k))

    def __repr__(self) -> str:
        return f"Predictor({self.meta.get('run')!r}, classes={len(self.classes)}, input={self.spec.size}px)"


def check_source(source: str | Path) -> None:
    if not Path(source).exists():
        raise ImgclfError(f"run folder or model file not found: {source}")
