"""Benchmark of issue 5's targets: ``imgclf report`` on a CIFAR-10-sized test set, ``imgclf explain`` per image.

    python benchmarks/report_explain.py                    # full: 10,000 test images (about 5 min on 2 cores)
    python benchmarks/report_explain.py --n-test 400 --n-train 500 --explain-images 3 --repeats 1   # quick check

Targets: report <= 60 s and HTML <= 15 MB for 10,000 test images with resnet-fast; explain <= 0.5 s per image for
resnet-fast and <= 2 s per image for EfficientNet-Lite0 at 224 px. Prints ONE JSON line.

1. A CIFAR-10-layout dataset is written to a temporary folder: the training images of ../shared/data/cifar-10-mini
   and a test batch of ``--n-test`` images made from its 1,017 test images (mirrored and shifted copies), or random
   images when the mini set is absent.
2. resnet-fast is trained for ``--epochs`` (not timed against a target) without TTA, which keeps the built-in
   10,000-image evaluation cheap; the run is then marked as TTA (the CIFAR recipe's default) so the report's
   validation pass for temperature scaling costs what it costs by default.
3. ``imgclf report`` runs ``--repeats`` times as a fresh process (imports included), each time without the cached
   validation predictions.
4. ``Explainer`` (Grad-CAM; decode, preprocess, CAM, overlay at the original resolution and PNG write) runs on
   ``--explain-images`` JPEG photos of ``--photo-size`` for the trained resnet-fast and for an EfficientNet-Lite0
   model file at 224 px (random weights: the cost does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
MINI = ROOT.parent / "shared" / "data" / "cifar-10-mini"
SCENES = ROOT.parent / "shared" / "data" / "scenes-mini"


def write_cifar_like(folder: Path, n_train: int, n_test: int) -> str:
    """Write data_batch_1..5, test_batch and batches.meta; returns where the pixels came from."""
    from imgclf.data import load_dataset

    folder.mkdir(parents=True, exist_ok=True)
    try:
        ds = load_dataset("cifar10", data_dir=str(MINI), progress=False)
        classes, train, test = ds.classes, ds.pools["train"], ds.pools["test"]
        tx, ty, sx, sy, source = train.images, train.labels, test.images, test.labels, "cifar-10-mini"
    except Exception:  # the mini set is absent: random pixels still measure the cost
        rng = np.random.default_rng(0)
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        tx, ty = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n_train)
        sx, sy, source = rng.integers(0, 256, (1000, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 1000), "random"
    tx, ty = _tile(tx, ty, n_train)
    sx, sy = _tile(sx, sy, n_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in classes]}, f)
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _batch(folder / f"data_batch_{i}", tx[part], ty[part])
    _batch(folder / "test_batch", sx, sy)
    return source


def _tile(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images: the originals, then mirrored and shifted copies (so no two test images are identical)."""
    parts, labels, v = [], [], 0
    while sum(len(p) for p in parts) < n:
        view = x[:, :, :, ::-1] if v % 2 else x
        parts.append(np.roll(view, v // 2, axis=3))
        labels.append(y)
        v += 1
    return np.concatenate(parts)[:n], np.concatenate(labels)[:n]


def _batch(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"data": np.ascontiguousarray(x).reshape(len(x), -1), b"labels": [int(v) for v in y]}, f)


def train_run(data: Path, runs: Path, epochs: int, val_fraction: float) -> tuple[Path, float]:
    import imgclf
    from imgclf.config import from_flat, read_yaml, save_config

    start = time.perf_counter()
    result = imgclf.train(dataset="cifar10", data_dir=str(data), model="resnet-fast", epochs=epochs, tta=False,
                          val_fraction=val_fraction, runs_dir=str(runs), name="bench", progress=False)
    seconds = time.perf_counter() - start
    cfg = read_yaml(result.run_dir / "config.yaml")
    save_config(from_flat({**cfg, "tta": True}), result.run_dir / "config.yaml")  # the recipe's default
    return result.run_dir, seconds


def time_report(run: Path, out: Path, repeats: int) -> list[float]:
    times = []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for _ in range(repeats):
        (run / "val_predictions.npz").unlink(missing_ok=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgclf", "report", str(run), "--out", str(out)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def make_photos(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` JPEG photos of ``size`` (scenes-mini photos scaled up, or noise when absent)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(SCENES.rglob("*.jpg"))[:n] if SCENES.is_dir() else []
    paths = []
    for i in range(n):
        if i < len(sources):
            img = Image.open(sources[i]).convert("RGB").resize(size, Image.BICUBIC)
        else:
            img = Image.fromarray(np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        paths.append(folder / f"photo{i}.jpg")
        img.save(paths[-1], quality=90)
    return paths


def efficientnet_file(path: Path) -> Path:
    from imgclf.models.io import build_classifier, save_model

    arch = {"model": "timm:tf_efficientnet_lite0", "num_classes": 10, "net_channels": 3, "width": None,
            "dropout": None, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": 224}
    meta = {"classes": [f"c{i}" for i in range(10)], "orig_classes": None, "dataset": "none", "tta": False,
            "flip": True, "run": "effnet", "preprocess": {"size": 224, "channels": 3, "crop_fraction": 0.875,
                                                         "resample": "bicubic", "max_pixels": 40_000_000,
                                                         "extra": {}}}
    save_model(path, build_classifier(arch), arch, meta)
    return path


def time_explain(source: Path, photos: list[Path], out: Path, threads: int) -> dict:
    """Seconds per image of Grad-CAM: decode, preprocess, CAM, overlay at the original size, PNG write."""
    from imgclf.evaluation.explain import Explainer

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    explainer = Explainer(source, threads=threads)  # model load and layer search, once per command
    load = time.perf_counter() - start
    times = []
    for photo in photos:
        t = time.perf_counter()
        explainer.explain(photo).overlay_image.save(out / f"{photo.stem}.png", compress_level=3)
        times.append(time.perf_counter() - t)
    steady = times[1:] or times  # the first call also warms up the allocator and kernels
    return {"load_s": round(load, 3), "first_image_s": round(times[0], 3), "layer": explainer.layer.name,
            "per_image_s": round(statistics.mean(steady), 3),
            "per_image_std_s": round(statistics.stdev(steady), 3) if len(steady) > 1 else 0.0, "images": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--n-train", type=int, default=5085)
    parser.add_argument("--val-fraction", type=float, default=0.2, help="0.2 of 5085 -> 1017, capped at 1000")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--explain-images", type=int, default=10)
    parser.add_argument("--photo-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--explain-threads", type=int, default=1, help="as imgclf explain's --threads default")
    parser.add_argument("--work", type=Path, default=None, help="keep the files here (default: a temp folder)")
    args = parser.parse_args()

    import torch

    import imgclf

    load_before, threads = os.getloadavg(), torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        source = write_cifar_like(work / "cifar-10-batches-py", args.n_train, args.n_test)
        run, train_s = train_run(work, work / "runs", args.epochs, args.val_fraction)
        html = work / "report.html"
        report_s = time_report(run, html, args.repeats)
        photos = make_photos(work / "photos", args.explain_images, tuple(args.photo_size))
        resnet = time_explain(run, photos, work / "cams-resnet", args.explain_threads)
        effnet = time_explain(efficientnet_file(work / "effnet.pt"), photos, work / "cams-effnet",
                              args.explain_threads)
        html_mb = html.stat().st_size / 1e6
    result = {
        "benchmark": "report_explain", "n_test": args.n_test, "n_train": args.n_train, "pixels": source,
        "train_s": round(train_s, 1), "report_s": [round(t, 2) for t in report_s],
        "report_mean_s": round(statistics.mean(report_s), 2),
        "report_std_s": round(statistics.stdev(report_s), 2) if len(report_s) > 1 else 0.0,
        "html_mb": round(html_mb, 2), "explain_resnet_fast": resnet, "explain_efficientnet_lite0_224": effnet,
        "photo_size": list(args.photo_size), "explain_threads": args.explain_threads,
        "targets_met": {"report_60s": max(report_s) <= 60 if args.n_test >= 10_000 else None,
                        "html_15mb": html_mb <= 15, "explain_resnet_0.5s": resnet["per_image_s"] <= 0.5,
                        "explain_effnet_2s": effnet["per_image_s"] <= 2.0},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_cores": os.cpu_count(), "torch_threads": threads,
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"imgclf": imgclf.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
