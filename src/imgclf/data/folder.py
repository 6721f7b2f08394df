"""Datasets from image files: one sub-folder per class (``folder:PATH``) or a CSV of path,label (``csv:FILE``).

Each file is decoded once (EXIF orientation applied, converted to RGB, shortest side resized, centre-cropped)
by ``preprocess_image``, in parallel worker processes, and the uint8 result is cached on disk keyed by the
file list, sizes, modification times and preprocessing, so the next run reads no image file at all.
Unreadable files are skipped and reported one line each; nothing else is lost.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from imgclf.data.dataset import Dataset, Pool
from imgclf.data.images import IMAGE_EXTENSIONS, ImageError, PreprocessSpec, load_for_model
from imgclf.errors import ImgclfError


def list_class_folder(root: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """(class names, [(file, class)]) of a folder with one sub-folder per class."""
    if not root.is_dir():
        raise ImgclfError(f"dataset folder not found: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ImgclfError(f"{root}: no class sub-folders (expected {root}/CLASS/image.jpg)")
    items = []
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ImgclfError(f"{d}: class folder has no image files ({', '.join(IMAGE_EXTENSIONS[:4])}, ...)")
        items += [(f, d.name) for f in files]
    return [d.name for d in class_dirs], items


def read_csv_listing(path: Path) -> list[tuple[Path, str]]:
    """[(file, label)] from a CSV with columns path,label (relative paths are relative to the CSV)."""
    if not path.is_file():
        raise ImgclfError(f"CSV file not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise ImgclfError(f"{path}: expected a header with the columns path,label; got {reader.fieldnames}")
        rows = [(Path(r["path"]), r["label"].strip()) for r in reader if r.get("path")]
    if not rows:
        raise ImgclfError(f"{path}: no rows")
    return [(p if p.is_absolute() else path.parent / p, label) for p, label in rows]


def _decode_one(args: tuple[str, dict]) -> np.ndarray | str:
    path, spec = args
    try:
        return load_for_model(path, PreprocessSpec.from_dict(spec))
    except ImageError as exc:
        return str(exc)


def decode_files(files: list[Path], spec: PreprocessSpec, workers: int = 0, progress: bool = True,
                 label: str = "decoding") -> tuple[np.ndarray, list[int], list[str]]:
    """Decode files into one uint8 array; returns (images, indices of decoded files, error lines)."""
    workers = workers or os.cpu_count() or 1
    jobs = [(str(f), spec.to_dict()) for f in files]
    images, ok, errors = [], [], []
    results = _map(jobs, workers)
    if progress and len(files) > 200:
        results = _with_progress(results, len(files), label)
    for i, res in enumerate(results):
        if isinstance(res, str):
            errors.append(res)
        else:
            images.append(res)
            ok.append(i)
    shape = (0, spec.channels, spec.size, spec.size)
    return (np.stack(images) if images else np.zeros(shape, np.uint8)), ok, errors


def _map(jobs: list, workers: int):
    if workers <= 1 or len(jobs) < 64:
        yield from map(_decode_one, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_decode_one, jobs, chunksize=32)


def _with_progress(results, total: int, label: str):
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    start = time.perf_counter()
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  transient=True) as bar:
        task = bar.add_task(label, total=total, rate="")
        for i, res in enumerate(results, 1):
            yield res
            if i % 50 == 0 or i == total:
                bar.update(task, completed=i, rate=f"{i / (time.perf_counter() - start):.0f} images/s")


def cache_dir() -> Path:
    return Path(os.environ.get("IMGCLF_CACHE", "~/.cache/imgclf")).expanduser() / "decoded"


def _cache_key(files: list[Path], spec: PreprocessSpec) -> str:
    h = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def decode_cached(files: list[Path], spec: PreprocessSpec, workers: int = 0, progress: bool = True
                  ) -> tuple[np.ndarray, list[int], list[str]]:
    """``decode_files`` with an on-disk cache; a changed file, size or spec makes a new entry."""
    key = _cache_key(files, spec)
    folder = cache_dir()
    data_path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    if data_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return np.load(data_path), meta["ok"], meta["errors"]  # in memory and writable, as freshly decoded
    images, ok, errors = decode_files(files, spec, workers, progress)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.npy"
        np.save(tmp, images)
        tmp.replace(data_path)
        meta_path.write_text(json.dumps({"ok": ok, "errors": errors}))
    except OSError:
        pass  # a read-only cache only costs the decoding time next run
    return images, ok, errors


def _build_pool(items: list[tuple[Path, str]], classes: list[str], root: Path, spec: PreprocessSpec,
                workers: int, progress: bool) -> tuple[Pool, list[str]]:
    files = [f for f, _ in items]
    images, ok, errors = decode_cached(files, spec, workers, progress)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[items[i][1]] for i in ok], dtype=np.int64)
    ids = np.array([_rel(files[i], root) for i in ok])
    return Pool(np.asarray(images), labels, ids), errors


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def load_folder(root: str | Path, spec: PreprocessSpec, workers: int = 0, progress: bool = True) -> Dataset:
    """A folder-per-class dataset; ``root/train`` and ``root/test`` are used as the splits when present."""
    root = Path(root).expanduser()
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, train_items = list_class_folder(root / "train")
        test_classes, test_items = list_class_folder(root / "test")
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise ImgclfError(f"{root}/test has classes missing from train: {', '.join(extra)}")
        parts = {"train": train_items, "test": test_items}
    else:
        classes, items = list_class_folder(root)
        parts = {"all": items}
    pools, skipped = {}, []
    for name, items in parts.items():
        pools[name], errors = _build_pool(items, classes, root, spec, workers, progress)
        skipped += errors
    return Dataset(f"folder:{root}", classes, pools, skipped=skipped, source=str(root))


def load_csv(path: str | Path, spec: PreprocessSpec, workers: int = 0, progress: bool = True) -> Dataset:
    """A dataset listed in a CSV of path,label; a ``split`` column (train/test) is used when present."""
    path = Path(path).expanduser()
    items = read_csv_listing(path)
    classes = sorted({label for _, label in items})
    with open(path, newline="") as f:
        splits = [r.get("split", "") for r in csv.DictReader(f) if r.get("path")]
    pools, skipped = {}, []
    if any(s in ("train", "test") for s in splits):
        groups = {"train": [], "test": []}
        for item, s in zip(items, splits, strict=True):
            groups["test" if s == "test" else "train"].append(item)
    else:
        groups = {"all": items}
    for name, part in groups.items():
        pools[name], errors = _build_pool(part, classes, path.parent, spec, workers, progress)
        skipped += errors
    return Dataset(f"csv:{path}", classes, pools, skipped=skipped, source=str(path))
