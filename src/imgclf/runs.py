"""Run folders: what a run writes, and how every later step (evaluate, predict, report, serve) reads it.

Layout of ``runs/NAME/`` (a single-seed run)::

    config.yaml        the resolved config (every recipe value filled in)
    run.json           seed, versions, git hash, hardware, dataset, classes, status, timings
    split.json         the ids of the train / val / test images
    metrics.csv        one row per epoch
    checkpoints/       best.ckpt and last.ckpt (Lightning; load with torch.load(weights_only=True))
    model.pt           best weights + architecture + preprocessing contract (weights_only=True)
    metrics.json       test metrics: accuracy, macro_precision, macro_recall, macro_f1, roc_auc, train_seconds...
    per_class.csv, confusion_matrix.png, test_predictions.npz
    report.html        ``imgclf report``'s default output; val_predictions.npz caches its validation pass

A multi-seed run ``runs/NAME/`` holds ``seed-0/``, ``seed-1/``, ... plus ``group.json`` and a ``metrics.json``
with the mean (top-level keys) and ``*_std`` of each metric.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from imgclf.errors import ImgclfError

MODEL_FORMAT = "imgclf-model/1"
HEADLINE = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ImgclfError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise ImgclfError(f"{path} is not valid JSON ({exc})") from None


def write_json(path: Path, data: Any) -> None:
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.split("/")[-1] if text.startswith(("folder:", "csv:")) else text
                  ).strip("-") or "run"


def new_run_dir(runs_dir: str | Path, name: str | None, default_name: str, overwrite: bool) -> Path:
    """Create the run folder: ``name`` as given, or ``default_name`` with the first free number appended."""
    runs_dir = Path(runs_dir)
    if name:
        path = runs_dir / name
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise ImgclfError(f"run folder {path} already exists; pass --overwrite to replace it, "
                                  f"--resume {path} to continue it, or choose another --name")
            import shutil

            shutil.rmtree(path)
    else:
        path, i = runs_dir / default_name, 2
        while path.exists():
            path, i = runs_dir / f"{default_name}-{i}", i + 1
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_group(path: Path) -> bool:
    return (path / "group.json").is_file()


def find_run(path: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A run folder from a path or a bare name under ``runs_dir``; errors name what is missing."""
    p = Path(path)
    if not p.exists() and not p.is_absolute() and (Path(runs_dir) / p).exists():
        p = Path(runs_dir) / p
    if not p.is_dir():
        raise ImgclfError(f"run folder not found: {path}")
    if not (p / "run.json").is_file() and not is_group(p):
        raise ImgclfError(f"{p} is not an imgclf run folder (no run.json)")
    return p


def members(path: Path) -> list[Path]:
    """The single-seed runs of a run folder: itself, or the seed folders of a group."""
    if is_group(path):
        return [path / m for m in read_json(path / "group.json")["members"]]
    return [path]


def best_member(path: Path) -> Path:
    """The run to deploy from a group: the seed with the best validation accuracy (never the test set)."""
    runs = [m for m in members(path) if (m / "model.pt").is_file()]
    if not runs:
        raise ImgclfError(f"{path} has no trained model (model.pt); did training finish?")
    return max(runs, key=lambda m: read_json(m / "run.json").get("best_val_acc") or 0.0)


def model_file(path: str | Path) -> Path:
    """The model.pt of a run (best seed for a group), or the path itself if it is a model file."""
    p = Path(path)
    if p.is_file():
        return p
    run = best_member(find_run(p))
    return run / "model.pt"


def environment() -> dict:
    """Versions, git hash and hardware, recorded in every run."""
    import lightning
    import numpy
    import torch

    import imgclf

    info = {"imgclf": imgclf.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "lightning": lightning.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        info["git"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                     cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git"] = None
    return info


def list_runs(runs_dir: str | Path = "runs") -> list[dict]:
    """One row per run or group under ``runs_dir`` with its headline metrics, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    rows = []
    for path in sorted(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if not path.is_dir() or not ((path / "run.json").is_file() or is_group(path)):
            continue
        info = read_json(path / ("group.json" if is_group(path) else "run.json"))
        metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
        cfg = info.get("config", {})
        rows.append({"name": path.name, "path": str(path), "dataset": cfg.get("dataset", ""),
                     "model": cfg.get("model", ""), "seeds": len(info.get("members", [])) or 1,
                     "status": info.get("status", ""), "accuracy": metrics.get("accuracy"),
                     "accuracy_std": metrics.get("accuracy_std"), "macro_f1": metrics.get("macro_f1"),
                     "train_seconds": metrics.get("train_seconds"), "created": info.get("created", "")})
    return rows
