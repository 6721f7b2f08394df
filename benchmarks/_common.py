"""Shared by the benchmarks: run the default recipe over several seeds and print one JSON line of results."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or what platform knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import lightning
    import torch

    import imgclf

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "lightning": lightning.__version__, "imgclf": imgclf.__version__}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seeds", type=int, default=3, help="independent runs (seed 0..N-1)")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe (for a quick check)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    return p


def mean_std(values: list[float]) -> dict:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), 4), "std": round(std, 4), "runs": [round(v, 4) for v in values]}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_seeds(label: str, seeds: int, **overrides) -> dict:
    """Train + evaluate ``seeds`` runs of the default recipe; wall time per run includes data loading and testing."""
    import imgclf

    if overrides.get("threads") is None:
        overrides.pop("threads", None)
    load_before = load_average()
    accs, walls, rates, epochs = [], [], [], []
    with tempfile.TemporaryDirectory() as runs_dir:
        for seed in range(seeds):
            start = time.perf_counter()
            result = imgclf.train(seed=seed, runs_dir=runs_dir, name=f"{label}-{seed}", progress=False, **overrides)
            walls.append(time.perf_counter() - start)
            accs.append(result.metrics["accuracy"])
            with open(result.run_dir / "metrics.csv") as f:
                rows = list(csv.DictReader(f))
            rates.append(statistics.median(float(r["images_per_s"]) for r in rows))
            epochs.append(len(rows))
            print(f"[{label}] seed {seed}: accuracy {accs[-1]:.4f} in {walls[-1]:.1f} s", file=sys.stderr, flush=True)
    return {"accuracy": mean_std(accs), "wall_seconds": mean_std(walls), "train_images_per_s": mean_std(rates),
            "epochs": epochs[0], "config": overrides, "load_average_before_after": [load_before, load_average()]}


def emit(name: str, results: dict) -> None:
    print(json.dumps({"benchmark": name, **results, "machine": machine()}))
