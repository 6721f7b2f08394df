"""Streaming prediction over big folders: peak memory of `imgclf predict FOLDER --out` for 10k and 100k images.

The folder holds hard links to 256 real CIFAR-10 test images (PNG), spread over sub-folders of 1,000, so building
100k inputs costs no disk. Each size runs in a fresh process; its peak RSS comes from getrusage.

    python benchmarks/predict_stream.py --run runs/c10        # target: memory flat (± 10 %) from 10k to 100k
"""

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, emit, parser


def build_folder(root: Path, n: int, sources: list[Path]) -> Path:
    folder = root / f"n{n}"
    for i in range(n):
        sub = folder / f"{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        os.link(sources[i % len(sources)], sub / f"{i:07d}.png")
    return folder


def sources(root: Path) -> list[Path]:
    from PIL import Image

    from imgclf.data import load_dataset

    ds = load_dataset("cifar10", data_dir=DATA / "cifar-10-mini")
    images = ds.pools["test"].images[:256]
    out = []
    for i, img in enumerate(images):
        path = root / f"src{i}.png"
        Image.fromarray(img.transpose(1, 2, 0)).save(path)
        out.append(path)
    return out


def measure(run: str, folder: Path, out: Path) -> dict:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "imgclf", "predict", run, str(folder), "--out", str(out), "--no-tta",
           "--batch-size", "256"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, check=True, capture_output=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    seconds = time.perf_counter() - start
    with open(out) as f:
        n = sum(1 for _ in f)
    return {"images": n, "seconds": round(seconds, 1), "images_per_s": round(n / seconds, 1),
            "peak_rss_mib": round(max(peak, before) / 1024, 1)}


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--run", required=True, help="a trained run folder (CIFAR-10, 32 px)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = sources(root)
        results = {}
        for n in sorted(args.sizes):  # ascending: RUSAGE_CHILDREN keeps the largest child peak so far
            results[str(n)] = measure(args.run, build_folder(root, n, src), root / f"p{n}.jsonl")
    peaks = [r["peak_rss_mib"] for r in results.values()]
    emit("predict-stream", {"sizes": results, "memory_growth": round(peaks[-1] / peaks[0] - 1, 3)})
