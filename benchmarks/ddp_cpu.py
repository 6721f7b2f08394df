"""Two-process DDP on the CPU (gloo) against one process, same data, epochs and global batch.

On 2 cores DDP cannot be faster; the gate is correctness: test accuracy within 0.5 point, every training sample
seen once per epoch across the processes. Runs `imgclf train` as subprocesses (DDP re-launches the command).

    python benchmarks/ddp_cpu.py [--epochs 10] [--seeds 3] [--first-seed 0]
"""

import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, mean_std, parser


def run(devices: int, seed: int, epochs: int, data: str, runs: Path) -> dict:
    name = f"d{devices}-s{seed}"
    cmd = [sys.executable, "-m", "imgclf", "train", "--dataset", "cifar10", "--data-dir", data, "--epochs", str(epochs),
           "--batch-size", str(256 // devices), "--devices", str(devices), "--accelerator", "cpu", "--seed", str(seed),
           "--runs-dir", str(runs), "--name", name, "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    folder = runs / name
    metrics = json.loads((folder / "metrics.json").read_text())
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {"accuracy": metrics["accuracy"], "wall": wall, "rows": len(rows),
            "images_per_s": statistics.median(float(r["images_per_s"]) for r in rows),
            "run_folders": sorted(p.name for p in runs.iterdir())}


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    args = p.parse_args()
    data = str(args.data / "cifar-10-mini")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for devices in (1, 2):
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            res = [run(devices, s, args.epochs or 10, data, Path(tmp) / f"runs{devices}") for s in seeds]
            out[f"{devices}_process"] = {"accuracy": mean_std([r["accuracy"] for r in res]),
                                         "wall_seconds": mean_std([r["wall"] for r in res]),
                                         "train_images_per_s": mean_std([r["images_per_s"] for r in res]),
                                         "epochs_logged": res[0]["rows"], "run_folders": res[0]["run_folders"]}
    gap = abs(out["2_process"]["accuracy"]["mean"] - out["1_process"]["accuracy"]["mean"])
    emit("ddp-cpu", {**out, "accuracy_gap": round(gap, 4), "within_half_point": gap <= 0.005})
