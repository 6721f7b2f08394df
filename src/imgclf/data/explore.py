"""What is in a dataset: the computations behind ``imgclf data explore`` (pure; figures in ``data.plots``, the
HTML page in ``data.report``).

    imgclf data explore cifar10 --data-dir ../shared/data/cifar-10-mini --out eda/
    imgclf data explore photos/ --out eda/          # a folder, folder:PATH or csv:FILE

1. Load the dataset with ``imgclf.data.load_dataset`` (the same reading and preprocessing as training).
2. Class counts per split and the imbalance ratio (largest class / smallest class).
3. Per-channel mean, standard deviation and 256-bin histogram of the pixel values (0..1).
4. Per image brightness (mean luma) and contrast (standard deviation of luma, "RMS contrast"); spread per class.
5. For file datasets, the original image sizes and aspect ratios (read from the file headers only).
6. Data quality: the ``clean`` findings of a folder; for in-memory datasets, exact and near duplicates, leaks
   between train and test, and label conflicts, found on the arrays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.data.dataset import Dataset, class_counts

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights of R, G, B
NEAR_LIMIT = 20_000  # images; above this, in-memory datasets are searched for exact duplicates only


@dataclass
class Exploration:
    """Everything the report shows; ``to_dict`` is the JSON summary (no arrays)."""

    dataset: str
    classes: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W) of the loaded arrays
    counts: dict[str, list[int]]  # pool ("train", "test" or "all") -> images per class
    imbalance: float  # largest class / smallest class, all pools together (inf when a class is empty)
    channels: dict  # names, mean, std (0..1), hist (channels x 256 counts)
    per_class: list[dict]  # class, images, brightness and contrast summaries
    brightness: np.ndarray  # (n,) mean luma per image, 0..1, in pool order
    contrast: np.ndarray  # (n,) std of luma per image, 0..1
    labels: np.ndarray  # (n,) class index per image, same order
    samples: dict[str, np.ndarray]  # class -> uint8 (k, C, H, W)
    sizes: dict | None = None  # file datasets: summary of widths, heights and aspect ratios
    size_array: np.ndarray | None = None  # (n, 2) width, height of the original files
    quality: dict | None = None  # kind -> count, plus "note" and "examples"
    skipped: list[str] = field(default_factory=list)  # files that could not be read

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "classes": self.classes, "image_shape": list(self.image_shape),
                "counts": self.counts, "imbalance": self.imbalance,
                "channels": {k: v for k, v in self.channels.items() if k != "hist"}, "per_class": self.per_class,
                "sizes": self.sizes, "quality": self.quality, "skipped": self.skipped}


def imbalance_ratio(counts: np.ndarray) -> float:
    """Largest class count / smallest class count; inf when a class has no images.

    Examples:
        >>> imbalance_ratio(np.array([50, 10, 25]))
        5.0
    """
    counts = np.asarray(counts)
    if len(counts) == 0 or counts.max() == 0:
        return float("nan")
    return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())


def _blocks(images: np.ndarray | list[np.ndarray], chunk: int):
    for arr in images if isinstance(images, list) else [images]:
        for start in range(0, len(arr), chunk):
            yield np.asarray(arr[start:start + chunk])


def channel_stats(images: np.ndarray | list[np.ndarray], chunk: int = 4096) -> dict:
    """Per-channel mean, std (pixel values scaled to 0..1) and 256-bin histograms of uint8 (N, C, H, W) images
    (one array or a list of arrays, e.g. the pools of a dataset).

    Examples:
        >>> s = channel_stats(np.full((2, 3, 4, 4), 255, np.uint8))
        >>> s["mean"], s["std"], s["hist"][0][255]
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], 32)
    """
    arrays = images if isinstance(images, list) else [images]
    c = arrays[0].shape[1]
    total, total_sq = np.zeros(c), np.zeros(c)
    hist = np.zeros((c, 256), dtype=np.int64)
    for block in _blocks(arrays, chunk):
        total += block.sum(axis=(0, 2, 3), dtype=np.float64)
        total_sq += np.square(block, dtype=np.float64).sum(axis=(0, 2, 3))
        for k in range(c):
            hist[k] += np.bincount(block[:, k].ravel(), minlength=256)
    n = max(sum(a.shape[0] * a.shape[2] * a.shape[3] for a in arrays), 1)
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0))
    names = ["R", "G", "B"] if c == 3 else ["L"] if c == 1 else [str(k) for k in range(c)]
    return {"names": names, "mean": (mean / 255).round(4).tolist(), "std": (std / 255).round(4).tolist(),
            "hist": hist.tolist()}


def brightness_contrast(images: np.ndarray | list[np.ndarray], chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(brightness, contrast) per image: mean and standard deviation of its luma, 0..1.

    Examples:
        >>> b, c = brightness_contrast(np.stack([np.zeros((3, 2, 2), np.uint8), np.full((3, 2, 2), 255, np.uint8)]))
        >>> b.round(3).tolist(), c.tolist()
        ([0.0, 1.0], [0.0, 0.0])
    """
    out_b, out_c = [], []
    for raw in _blocks(images, chunk):
        block = raw.astype(np.float32) / 255.0
        luma = np.tensordot(LUMA.astype(np.float32), block, axes=([0], [1])) if block.shape[1] == 3 else block[:, 0]
        flat = luma.reshape(len(block), -1)
        out_b.append(flat.mean(1))
        out_c.append(flat.std(1))
    return (np.concatenate(out_b) if out_b else np.zeros(0)), (np.concatenate(out_c) if out_c else np.zeros(0))


def summarize(values: np.ndarray) -> dict:
    """mean, std and the 5th/50th/95th percentiles, rounded (empty input gives NaNs)."""
    if len(values) == 0:
        return dict.fromkeys(("mean", "std", "p5", "p50", "p95"), float("nan"))
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
            "p5": round(float(p5), 4), "p50": round(float(p50), 4), "p95": round(float(p95), 4)}


def per_class_stats(brightness: np.ndarray, contrast: np.ndarray, labels: np.ndarray, classes: list[str]
                    ) -> list[dict]:
    """One row per class: images, brightness and contrast summaries."""
    rows = []
    for k, name in enumerate(classes):
        sel = labels == k
        rows.append({"class": name, "images": int(sel.sum()), "brightness": summarize(brightness[sel]),
                     "contrast": summarize(contrast[sel])})
    return rows


def image_sizes(paths: list[Path]) -> np.ndarray:
    """(n, 2) width, height of image files, from their headers (no decoding); unreadable files give 0, 0."""
    from PIL import Image

    out = np.zeros((len(paths), 2), dtype=np.int64)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                out[i] = img.size
        except Exception:  # noqa: BLE001 - a bad file is reported by clean, not here
            pass
    return out


def size_summary(sizes: np.ndarray) -> dict:
    """Summaries of widths, heights and aspect ratios (width / height), and the most common sizes."""
    sizes = sizes[(sizes > 0).all(1)]
    if len(sizes) == 0:
        return {}
    common: dict[str, int] = {}
    keys, counts = np.unique(sizes, axis=0, return_counts=True)
    for k in np.argsort(-counts)[:5]:
        common[f"{keys[k][0]}x{keys[k][1]}"] = int(counts[k])
    return {"width": summarize(sizes[:, 0]), "height": summarize(sizes[:, 1]),
            "aspect": summarize(sizes[:, 0] / sizes[:, 1]), "distinct": int(len(keys)), "most_common": common}


def pick_samples(labels: np.ndarray, num_classes: int, per_class: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of up to ``per_class`` random images of each class."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(num_classes):
        idx = np.flatnonzero(labels == k)
        out.append(np.sort(rng.choice(idx, min(per_class, len(idx)), replace=False)) if len(idx) else idx)
    return out


# data quality ------------------------------------------------------------------------------------------------------

def _quality_summary(findings: list, note: str) -> dict:
    from imgclf.data.clean import KINDS

    counts = dict.fromkeys(KINDS, 0)
    for f in findings:
        counts[f.kind] += 1
    return {"counts": counts, "flagged": len({f.file for f in findings}), "note": note,
            "examples": [f.to_dict() for f in findings[:20]]}


def array_quality(ds: Dataset, near_limit: int = NEAR_LIMIT, progress: bool = False) -> dict:
    """Duplicates, train/test leaks and label conflicts among the arrays of an in-memory dataset.

    Exact copies are always searched (hash of the pixels); near copies only up to ``near_limit`` images.
    """
    from PIL import Image

    from imgclf.data._parallel import track
    from imgclf.data.duplicates import Copies, Item, find_copies, group_findings
    from imgclf.data.hashing import gray64, view_hashes

    items, keys, arrays = [], [], []
    for pool_name, pool in ds.pools.items():
        split = pool_name if pool_name in ("train", "test") else ""
        for i in range(len(pool)):
            img = np.asarray(pool.images[i])
            items.append(Item(str(pool.ids[i]), split, ds.classes[pool.labels[i]], img.shape[1] * img.shape[2]))
            keys.append(hashlib.sha1(img.tobytes()).hexdigest())
            arrays.append((pool, i))
    near = len(items) <= near_limit
    if near:
        def gray(ref):
            img = np.asarray(ref[0].images[ref[1]])
            return gray64(Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)))

        grays = np.stack([gray(r) for r in track(arrays, len(arrays), "fingerprinting", progress)])
        copies = find_copies(np.stack([view_hashes(g) for g in grays]), grays)
        note = "exact and near duplicates"
    else:
        copies = Copies.from_keys(keys)
        note = f"exact duplicates only ({len(items):,} images > {near_limit:,} for the near-duplicate search)"
    findings = group_findings(copies, items, lambda idx: {i: keys[i] for i in idx})
    return _quality_summary(findings, note)


def folder_quality(root: Path, progress: bool = False, workers: int = 0) -> dict:
    """The ``clean`` findings of a folder, summarised."""
    from imgclf.data.clean import CleanOptions, scan

    result = scan(root, CleanOptions(workers=workers), progress)
    return _quality_summary(result.findings, f"imgclf data clean {root}")


# the whole exploration -----------------------------------------------------------------------------------------

def resolve_spec(spec: str) -> str:
    """A dataset spec; an existing folder given as a plain path becomes ``folder:PATH``."""
    from imgclf.data.builtin import BUILTINS

    if spec not in BUILTINS and ":" not in spec and Path(spec).expanduser().is_dir():
        return f"folder:{spec}"
    return spec


def _file_root(ds: Dataset, spec: str) -> Path | None:
    if spec.startswith("folder:"):
        return Path(ds.source)
    if spec.startswith("csv:"):
        return Path(ds.source).parent
    return None


def explore(spec: str, data_dir: str | Path | None = None, image_size: int | None = None, samples: int = 8,
            quality: bool = True, progress: bool = False, workers: int = 0, seed: int = 0) -> Exploration:
    """Compute everything the EDA report shows (see the module docstring).

    Examples:
        >>> e = explore("cifar10", data_dir="../shared/data/cifar-10-mini", quality=False)  # doctest: +SKIP
        >>> e.counts["train"][:3], round(e.imbalance, 2), e.channels["mean"]  # doctest: +SKIP
        ([503, 521, 510], 1.09, [0.4914, 0.4822, 0.4465])
    """
    from imgclf.data import load_dataset

    spec = resolve_spec(spec)
    ds = load_dataset(spec, data_dir=data_dir, image_size=image_size, workers=workers, progress=progress)
    pools = [p for p in ds.pools.values() if len(p)]
    images = [p.images for p in pools]
    labels = np.concatenate([p.labels for p in pools])
    brightness, contrast = brightness_contrast(images)
    counts = {name: class_counts(p.labels, len(ds.classes)).tolist() for name, p in ds.pools.items()}
    largest = max(pools, key=len)
    picks = pick_samples(largest.labels, len(ds.classes), samples, seed)
    result = Exploration(
        ds.name, ds.classes, tuple(largest.images.shape[1:]), counts,
        imbalance_ratio(class_counts(labels, len(ds.classes))), channel_stats(images),
        per_class_stats(brightness, contrast, labels, ds.classes), brightness, contrast, labels,
        {c: np.asarray(largest.images[idx]) for c, idx in zip(ds.classes, picks, strict=True)},
        skipped=list(ds.skipped))
    root = _file_root(ds, spec)
    if root is not None:
        result.size_array = image_sizes([root / str(i) for p in pools for i in p.ids])
        result.sizes = size_summary(result.size_array)
    if quality:
        result.quality = (folder_quality(root, progress, workers) if spec.startswith("folder:")
                          else array_quality(ds, progress=progress) if root is None else None)
    return result
