"""Saving and loading deployable models: weights plus everything needed to rebuild and feed them.

The file holds only tensors and plain values, so ``torch.load(path, weights_only=True)`` reads it: no pickled
code is ever executed when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imgclf.errors import ImgclfError
from imgclf.models.classifier import ImageClassifier
from imgclf.models.registry import create_model

MODEL_FORMAT = "imgclf-model/1"


def build_classifier(arch: dict[str, Any]) -> ImageClassifier:
    """Rebuild an (untrained) ImageClassifier from its ``arch`` record."""
    net = create_model(arch["model"], num_classes=arch["num_classes"], in_channels=arch["net_channels"],
                       width=arch.get("width"), dropout=arch.get("dropout"))
    return ImageClassifier(net, arch["mean"], arch["std"], arch["input_size"], arch["net_channels"])


def save_model(path: str | Path, model: ImageClassifier, arch: dict, meta: dict) -> None:
    """Write weights, ``arch`` (see build_classifier) and ``meta`` (classes, preprocess, tta, ...)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = Path(path).with_suffix(".tmp")
    torch.save({"format": MODEL_FORMAT, "arch": arch, "meta": meta, "state_dict": state}, tmp)
    tmp.replace(path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[ImageClassifier, dict]:
    """(model in eval mode, meta) from a model file written by ``save_model``."""
    path = Path(path)
    if not path.is_file():
        raise ImgclfError(f"model file not found: {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or damaged file
        raise ImgclfError(f"{path}: not a readable imgclf model ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ImgclfError(f"{path}: not an imgclf model file (format {MODEL_FORMAT})")
    model = build_classifier(blob["arch"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, {**blob["meta"], "arch": blob["arch"]}
