"""Per-dataset default recipes: what ``imgclf train --dataset X`` uses for every key left unset.

The recipe scales with the data: the number of epochs grows for small training sets so that every run sees
a useful number of optimisation steps, and the batch shrinks so that small sets still get enough steps.
The SGD values of ``resnet-fast`` are airbench94's (Keller Jordan, 2024) expressed for the batch-mean loss:
lr = 11.5 per 1024 examples / (1 + 1 / (1 - momentum)), weight decay 0.0153 per 1024 examples / lr.
"""

from __future__ import annotations

import math
from typing import Any

_AIRBENCH_LR_PER_EXAMPLE = 11.5 / (1024 * (1 + 1 / (1 - 0.85)))  # x batch size = peak lr for the mean loss


def _epochs_for(n_train: int, target_images: int, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, math.ceil(target_images / max(n_train, 1)))))


def dataset_recipe(family: str, n_train: int, image_size: int) -> dict[str, Any]:
    """Data, model and schedule defaults for a dataset family and training-set size."""
    if family in ("cifar10", "cifar100"):
        big = n_train >= 20_000
        return {"model": "resnet-fast", "batch_size": 1024 if big else 256, "flip": True, "translate": 2,
                "cutout": 0, "tta": True, "epochs": _epochs_for(n_train, 140_000, 10 if family == "cifar10" else 15,
                                                                   60)}
    if family == "mnist":
        return {"model": "resnet-fast", "width": 0.5, "batch_size": 256, "flip": False, "translate": 2, "cutout": 0,
                "tta": False, "epochs": _epochs_for(n_train, 300_000, 5, 60)}
    if family == "fashion-mnist":
        return {"model": "resnet-fast", "width": 0.5, "batch_size": 256, "flip": True, "translate": 2, "cutout": 0,
                "tta": True, "epochs": _epochs_for(n_train, 800_000, 10, 60)}
    # your own photos (folder:, csv:)
    return {"model": "resnet-fast", "batch_size": 128 if n_train >= 2000 else 64, "flip": True,
            "translate": max(2, image_size // 16), "cutout": 0, "tta": True,
            "epochs": _epochs_for(n_train, 40_000, 10, 60)}


def optim_recipe(model: str, batch_size: int) -> dict[str, Any]:
    """Optimiser defaults for a model: airbench's SGD for resnet-fast, AdamW with one-cycle for the others."""
    if model == "resnet-fast":
        return {"optimizer": "sgd", "lr": _AIRBENCH_LR_PER_EXAMPLE * batch_size, "momentum": 0.85,
                "weight_decay": 0.0153 / 11.5, "schedule": "onecycle", "warmup": 0.23, "label_smoothing": 0.2,
                "width": 1.0, "dropout": 0.0}
    return {"optimizer": "adamw", "lr": 2e-3 * math.sqrt(batch_size / 256), "momentum": 0.9, "weight_decay": 0.05,
            "schedule": "onecycle", "warmup": 0.2, "label_smoothing": 0.1, "width": None, "dropout": None}


def transfer_recipe(flat: dict[str, Any]) -> dict[str, Any]:
    """timm backbones: fine-tune when pretrained (head first for an epoch), else train from scratch.

    A linear probe turns the data augmentation off so that frozen features can be cached (flips stay on: the
    mirrored view of each image is cached too).
    """
    transfer = flat.get("transfer") or ("fine-tune" if flat.get("pretrained") or flat.get("weights") else "scratch")
    common = {"transfer": transfer, "optimizer": "adamw", "momentum": 0.9, "label_smoothing": 0.1,
              "schedule": "cosine", "width": None}
    if transfer == "linear-probe":
        return {**common, "translate": 0, "cutout": 0, "epochs": 30, "batch_size": 256, "lr": 1e-3,
                "weight_decay": 1e-4, "warmup": 0.05, "freeze_epochs": 0, "backbone_lr_scale": 1.0,
                "layer_decay": 1.0}
    if transfer == "fine-tune":
        return {**common, "epochs": 8, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.05, "warmup": 0.1,
                "freeze_epochs": 1, "backbone_lr_scale": 0.1, "layer_decay": 1.0}
    return {**common, "epochs": 30, "batch_size": 128, "lr": 2e-3, "weight_decay": 0.05, "warmup": 0.1,
            "freeze_epochs": 0, "backbone_lr_scale": 1.0, "layer_decay": 1.0}


def resolve(flat: dict[str, Any], family: str, n_train: int, image_size: int) -> dict[str, Any]:
    """Fill every None in a flat config from the recipes (explicit values always win).

    Precedence: explicit value > transfer recipe (timm backbones) > dataset recipe > optimiser recipe.
    """
    out = dict(flat)
    data_recipe = dataset_recipe(family, n_train, image_size)
    model = out.get("model") or data_recipe["model"]
    if model != data_recipe["model"]:
        data_recipe.pop("width", None)  # model-specific: the recipe's width is for its own model
    layers = [transfer_recipe(out)] if model.startswith("timm:") else \
        [{"transfer": "scratch", "freeze_epochs": 0, "backbone_lr_scale": 1.0, "layer_decay": 1.0}]
    layers.append(data_recipe)
    for layer in layers:
        for key, value in layer.items():
            if out.get(key) is None:
                out[key] = value
    # DDP averages gradients over every process's batch: the learning rate follows the global batch
    processes = int(out.get("devices") or 1) * int(out.get("num_nodes") or 1)
    for key, value in optim_recipe(out["model"], out["batch_size"] * processes).items():
        if out.get(key) is None:
            out[key] = value
    if out.get("image_size") is None:
        out["image_size"] = image_size
    return out
