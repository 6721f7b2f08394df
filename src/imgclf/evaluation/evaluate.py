"""Evaluate a run on its recorded test split: metrics.json, per_class.csv, confusion_matrix.png, predictions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from imgclf.errors import ImgclfError
from imgclf.evaluation.metrics import classification_report
from imgclf.models import tta_logits
from imgclf.runs import HEADLINE, find_run, is_group, members, read_json, write_json


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, images: np.ndarray, batch_size: int = 512, tta: int = 0,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Softmax probabilities (N, K) of uint8 images (N, C, H, W), batched, with optional TTA."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
        out.append(torch.softmax(tta_logits(model, x, tta).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def tta_level(config: dict) -> int:
    """0 without TTA; 2 (mirror + shifts) with it, or 0 for digits-like data, which are never mirrored.

    Linear probes use 1 (mirror only): the views whose frozen features are cached, so the metrics computed from
    the cache at the end of training are the ones ``evaluate`` and ``Predictor`` reproduce.
    """
    if not (config.get("tta") and config.get("flip")):
        return 0
    return 1 if config.get("transfer") == "linear-probe" else 2


def evaluate_arrays(probs: np.ndarray, labels: np.ndarray, classes: list[str], out_dir: Path,
                    extra: dict | None = None, ids: np.ndarray | None = None,
                    orig_labels: np.ndarray | None = None) -> dict:
    """Compute every metric and write metrics.json, per_class.csv, confusion_matrix.png, test_predictions.npz."""
    from imgclf.evaluation.plots import plot_confusion_matrix

    report = classification_report(labels, probs, classes)
    metrics = {**{k: v for k, v in report.items() if k not in ("per_class", "confusion_matrix")}, **(extra or {})}
    metrics["per_class"] = report["per_class"]
    metrics["confusion_matrix"] = report["confusion_matrix"]
    write_json(out_dir / "metrics.json", metrics)
    with open(out_dir / "per_class.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["class", "precision", "recall", "f1", "support", "roc_auc"])
        writer.writeheader()
        writer.writerows(report["per_class"])
    plot_confusion_matrix(np.array(report["confusion_matrix"]), classes, out_dir / "confusion_matrix.png")
    np.savez_compressed(out_dir / "test_predictions.npz", probs=probs.astype(np.float32), labels=labels,
                        ids=ids if ids is not None else np.array([]),
                        orig_labels=orig_labels if orig_labels is not None else np.array([]))
    return metrics


def evaluate_run(run_dir: Path, data_dir: str | None = None, test_pool=None, progress: bool = True,
                 probs: np.ndarray | None = None) -> dict:
    """Evaluate one single-seed run on its recorded test split (reloading the data unless given).

    ``probs`` may carry test probabilities already computed (e.g. from cached features) for ``test_pool``.
    """
    from imgclf.config import read_yaml
    from imgclf.data import load_dataset, splits_from_ids
    from imgclf.models.io import load_model

    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").is_file():
        raise ImgclfError(f"{run_dir} has no model.pt; did training finish? (resume it with --resume {run_dir})")
    model, meta = load_model(run_dir / "model.pt")
    cfg = read_yaml(run_dir / "config.yaml")
    info = read_json(run_dir / "run.json")
    if test_pool is None:
        ds = load_dataset(cfg["dataset"], data_dir=data_dir or cfg.get("data_dir"), image_size=cfg["image_size"],
                          classes=cfg.get("classes"), max_pixels=cfg["max_pixels"], workers=cfg["workers"],
                          progress=progress, crop_fraction=meta["preprocess"].get("crop_fraction", 1.0),
                          resample=meta["preprocess"].get("resample", "bicubic"))
        test_pool = splits_from_ids(ds, read_json(run_dir / "split.json")).test
    if probs is None:
        probs = predict_probs(model, test_pool.images, tta=tta_level(cfg))
    extra = {"train_seconds": info.get("train_seconds"), "best_val_acc": info.get("best_val_acc"),
             "epochs": info.get("epochs_done"), "tta": tta_level(cfg), "model": cfg["model"], "dataset": cfg["dataset"]}
    return evaluate_arrays(probs, test_pool.labels, meta["classes"], run_dir, extra, test_pool.ids,
                           test_pool.orig_labels)


def summarize_group(group_dir: Path, results: list[dict]) -> dict:
    """Mean and sample std over seeds of every numeric top-level metric; written to the group's metrics.json."""
    summary: dict = {"seeds": len(results)}
    keys = [k for k, v in results[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    for key in keys:
        values = np.array([r[key] for r in results if r.get(key) is not None], dtype=np.float64)
        if len(values):
            summary[key] = float(values.mean())
            summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    summary["members"] = [{k: r.get(k) for k in (*HEADLINE, "train_seconds")} for r in results]
    write_json(group_dir / "metrics.json", summary)
    return summary


def evaluate(run: str | Path, data_dir: str | None = None, runs_dir: str | Path = "runs",
             progress: bool = True) -> dict:
    """Evaluate a run folder (every seed of a group, then mean ± std) and write the files into it.

    Examples:
        >>> metrics = imgclf.evaluate("runs/c10")  # doctest: +SKIP
        >>> round(metrics["accuracy"], 3)  # doctest: +SKIP
        0.941
    """
    path = find_run(run, runs_dir)
    results = [evaluate_run(m, data_dir, progress=progress) for m in members(path)]
    return summarize_group(path, results) if is_group(path) else results[0]
