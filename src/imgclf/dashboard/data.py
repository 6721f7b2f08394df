"""What the dashboard shows, as pure functions over run files and arrays (no Streamlit; tested on their own).

Reading order follows the pages: runs -> summary -> data -> performance -> classifier checks -> findings.
The error analysis itself (confused pairs, ROC, calibration) is ``imgclf.evaluation.analysis``; this module only
adds what a dashboard needs on top: tables, pages of images, pixel statistics, data-quality counts and the
auto-filled findings.

Examples:
    >>> import numpy as np
    >>> class_distribution({"train": np.array([0, 0, 1]), "test": np.array([1])}, ["cat", "dog"])[0]
    {'class': 'cat', 'train': 2, 'test': 0, 'total': 2, 'share': 0.5}
    >>> page_of(np.arange(10), page=2, per_page=4)
    (array([4, 5, 6, 7]), 3)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.errors import ImgclfError

SUMMARY_FILE = "summary.md"  # the business question, in the run folder
NOTES_FILE = "notes.md"  # free notes of the findings page, in the run folder
CLEAN_REPORTS = ("clean.json", "clean_report.json", "data_clean.json", ".imgclf/clean.json")  # looked for in order
MAX_UPLOAD_BYTES = 20_000_000  # bytes, largest uploaded file the classifier page accepts
MAX_UPLOAD_PIXELS = 25_000_000  # pixels, largest uploaded image (also capped by the run's own max_pixels)

DEFAULT_SUMMARY = """*What decision does this classifier support, for whom, and what accuracy makes it useful?*
Edit this text; it is saved as `summary.md` in the run folder.
"""

DEFAULT_NOTES = """#### Hypothesis

*What did you expect this model to learn, and where did you expect it to fail?*

#### Notes

*What you checked, what you will try next.*
"""


# runs -----------------------------------------------------------------------------------------------------------------

def discover_runs(path: str | Path) -> list[Path]:
    """The run folders a dashboard shows: the folder itself if it is a run (or seed group), else the runs in it.

    Runs inside are listed newest first; the seed folders of a group are not listed on their own.

    Raises:
        ImgclfError: the folder does not exist or holds no run.
    """
    from imgclf.runs import is_group

    root = Path(path)
    if not root.is_dir():
        raise ImgclfError(f"run folder not found: {path}")
    if (root / "run.json").is_file() or is_group(root):
        return [root]
    runs = [p for p in root.iterdir() if p.is_dir() and ((p / "run.json").is_file() or is_group(p))]
    if not runs:
        raise ImgclfError(f"{path} is neither a run folder (no run.json) nor a folder of run folders")
    return sorted(runs, key=lambda p: (-p.stat().st_mtime, p.name))


def detail_member(run: Path) -> Path:
    """The single-seed run whose details are shown: the run itself, or the best seed (by validation) of a group
    (its first seed while none has finished)."""
    from imgclf.runs import best_member, is_group, members

    if not is_group(run):
        return run
    try:
        return best_member(run)
    except ImgclfError:
        return members(run)[0]


def read_text(path: Path, default: str = "") -> str:
    """A text file's content, or ``default`` when it does not exist."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return default


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temporary file, then rename); a read-only folder is an ImgclfError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise ImgclfError(f"cannot save {path}: {exc.strerror or exc}") from None


# summary --------------------------------------------------------------------------------------------------------------

def headline(metrics: dict, group: dict | None = None) -> list[dict]:
    """The headline test metrics ``{name, key, value, std}``: of the group (mean ± std over seeds) when given."""
    names = {"accuracy": "accuracy", "macro_f1": "macro F1", "roc_auc": "ROC-AUC", "macro_precision": "precision",
             "macro_recall": "recall"}
    source = group or metrics
    topk = next((k for k in source if k.startswith("top") and k.endswith("_accuracy") and not k.endswith("_std")),
                None)
    keys = ["accuracy", *([topk] if topk else []), "macro_f1", "macro_precision", "macro_recall", "roc_auc"]
    return [{"name": names.get(k, k.replace("_accuracy", " accuracy").replace("top", "top-")), "key": k,
             "value": source[k], "std": source.get(f"{k}_std")}
            for k in keys if isinstance(source.get(k), int | float) and not isinstance(source.get(k), bool)]


def _g(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def overview(info: dict, cfg: dict) -> list[dict]:
    """What the run is: rows ``{section, item, value}`` on data, model, recipe, time and hardware (from run.json)."""
    ds, env = info.get("dataset", {}), info.get("environment", {})
    classes = ds.get("classes") or []
    shown = ", ".join(classes[:12]) + (f", … ({len(classes)} classes)" if len(classes) > 12 else "")
    recipe = (f"{cfg.get('optimizer')} lr {_g(cfg.get('lr'))}, batch {cfg.get('batch_size')}, {cfg.get('schedule')}, "
              f"label smoothing {cfg.get('label_smoothing')}, weight decay {_g(cfg.get('weight_decay'))}")
    augment = f"flip {cfg.get('flip')}, translate {cfg.get('translate')} px, cutout {cfg.get('cutout')}, " \
              f"mixup {cfg.get('mixup')}, cutmix {cfg.get('cutmix')}, TTA {cfg.get('tta')}"
    seconds = info.get("train_seconds")
    rows = [
        ("data", "dataset", f"{cfg.get('dataset')}" + (f" ({ds['source']})" if ds.get("source") and
                                                       ds["source"] not in str(cfg.get("dataset")) else "")),
        ("data", "classes", shown + (f" [grouped by {cfg['classes']}]" if cfg.get("classes") else "")),
        ("data", "images train / val / test", f"{ds.get('n_train')} / {ds.get('n_val')} / {ds.get('n_test')}"),
        ("data", "image size", f"{ds.get('image_size')} px, {ds.get('channels')} channel(s)"),
        ("model", "model", f"{cfg.get('model')}" + (" (pretrained)" if cfg.get("pretrained") else "")
         + (f", transfer {cfg.get('transfer')}" if cfg.get("transfer") not in (None, "scratch") else "")),
        ("recipe", "optimiser", recipe),
        ("recipe", "augmentation", augment),
        ("recipe", "epochs, seed", f"{info.get('epochs_done')} of {cfg.get('epochs')}, seed {info.get('seed')}"),
        ("time", "training time", f"{seconds:.1f} s" if isinstance(seconds, int | float) else "–"),
        ("time", "created, finished", f"{info.get('created', '–')}, {info.get('finished', '–')}"),
        ("hardware", "machine", f"{env.get('processor')}, {env.get('cpu_cores')} cores "
                                f"({env.get('torch_threads')} torch threads), GPU: {env.get('gpu') or 'none'}"),
        ("hardware", "software", f"imgclf {env.get('imgclf')}, torch {env.get('torch')}, Python {env.get('python')}"),
        ("hardware", "git", env.get("git") or "–"),
    ]
    return [{"section": s, "item": i, "value": str(v)} for s, i, v in rows]


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows as a markdown table (pipes and line breaks in cells escaped), so long values wrap instead of being cut.

    Examples:
        >>> print(markdown_table([{"a": 1, "b": "x|y"}], ["a", "b"]))
        | a | b |
        |---|---|
        | 1 | x\\|y |
    """
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows])


# data -----------------------------------------------------------------------------------------------------------------

def class_distribution(labels_by_split: dict[str, np.ndarray], classes: list[str]) -> list[dict]:
    """Images per class and split: rows ``{class, <split>..., total, share}`` (share of all images)."""
    k = len(classes)
    counts = {s: np.bincount(np.asarray(lab, dtype=np.int64), minlength=k)[:k] for s, lab in labels_by_split.items()}
    total = sum(counts.values()) if counts else np.zeros(k, dtype=np.int64)
    n = max(int(np.sum(total)), 1)
    return [{"class": c, **{s: int(v[i]) for s, v in counts.items()}, "total": int(total[i]),
             "share": round(float(total[i]) / n, 4)} for i, c in enumerate(classes)]


def imbalance(rows: list[dict], column: str = "total") -> float:
    """Largest over smallest class count (inf when a class has no image; 1.0 for a balanced set)."""
    counts = [r[column] for r in rows]
    if not counts:
        return 1.0
    return math.inf if min(counts) == 0 else max(counts) / min(counts)


def page_of(indices: np.ndarray, page: int, per_page: int) -> tuple[np.ndarray, int]:
    """The ``page``-th (from 1) slice of ``indices`` and the number of pages (at least 1); pages are clamped."""
    n_pages = max(1, math.ceil(len(indices) / per_page))
    page = min(max(page, 1), n_pages)
    return np.asarray(indices)[(page - 1) * per_page : page * per_page], n_pages


def to_display(image: np.ndarray, min_side: int = 96) -> np.ndarray:
    """A uint8 (C, H, W) model array as an (H, W, 3) or (H, W) picture, enlarged by pixel repetition to ``min_side``."""
    arr = np.asarray(image)
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    scale = max(1, math.ceil(min_side / max(1, min(arr.shape[:2]))))
    return np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1) if scale > 1 else arr


def pixel_stats(images: np.ndarray, labels: np.ndarray | None = None, classes: list[str] | None = None,
                max_images: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Per-channel mean, std, min, max and 256-bin histograms of uint8 images (N, C, H, W), on a random subset.

    Returns:
        ``{n, channels: [{channel, mean, std, min, max}], histogram (C, 256) int, brightness: [{class, mean, std}]}``
        (``brightness`` per class, the mean pixel value of each image averaged over the class; [] without labels).
    """
    images = np.asarray(images)
    idx = np.arange(len(images))
    if len(idx) > max_images:
        idx = np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))
    sub = images[idx]
    c = sub.shape[1] if sub.ndim == 4 else 1
    names = ["gray"] if c == 1 else ["red", "green", "blue", "alpha"][:c]
    flat = sub.reshape(len(sub), c, -1).transpose(1, 0, 2).reshape(c, -1) if len(sub) else np.zeros((c, 0), np.uint8)
    channels = [{"channel": names[i], "mean": float(flat[i].mean()) if flat.size else float("nan"),
                 "std": float(flat[i].std()) if flat.size else float("nan"),
                 "min": int(flat[i].min()) if flat.size else 0, "max": int(flat[i].max()) if flat.size else 0}
                for i in range(c)]
    histogram = np.stack([np.bincount(flat[i], minlength=256)[:256] for i in range(c)])
    brightness = []
    if labels is not None and classes is not None and len(sub):
        per_image = sub.reshape(len(sub), -1).mean(axis=1)
        lab = np.asarray(labels)[idx]
        brightness = [{"class": name, "mean": float(per_image[lab == k].mean()),
                       "std": float(per_image[lab == k].std())} for k, name in enumerate(classes) if (lab == k).any()]
    return {"n": int(len(sub)), "of": int(len(images)), "channels": channels, "histogram": histogram,
            "brightness": brightness}


def _digests(images: np.ndarray) -> list[str]:
    return [hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).hexdigest() for a in images]


def quality_counts(pools: dict[str, np.ndarray], skipped: list[str] | None = None,
                   flat_std: float = 2.0) -> list[dict]:
    """Data-quality counts computed from the images as the model sees them (uint8 (N, C, H, W) per split).

    Rows ``{check, count, detail}``: files that could not be read, exact duplicates inside each split, test (and
    validation) images identical to a training image (leakage: they inflate test accuracy), and flat images
    (pixel std below ``flat_std``: blank, or a single colour).
    """
    rows = [{"check": "unreadable files skipped", "count": len(skipped or []),
             "detail": "; ".join((skipped or [])[:3])}]
    digests = {name: _digests(images) for name, images in pools.items()}
    for name, d in digests.items():
        rows.append({"check": f"duplicate images within {name}", "count": len(d) - len(set(d)),
                     "detail": "identical after resizing to the model's input"})
    train = set(digests.get("train", []))
    for name in ("val", "test"):
        if name in digests and train:
            leaked = sum(x in train for x in digests[name])
            rows.append({"check": f"{name} images also in train", "count": int(leaked),
                         "detail": "leakage: scores on them are optimistic"})
    for name, images in pools.items():
        if len(images):
            std = np.asarray(images).reshape(len(images), -1).std(axis=1)
            rows.append({"check": f"flat images in {name}", "count": int((std < flat_std).sum()),
                         "detail": f"pixel std < {flat_std:g}: blank or one colour"})
    return rows


def find_clean_report(folders: list[Path]) -> Path | None:
    """The first data-cleaning report (``CLEAN_REPORTS``, e.g. saved ``imgclf data clean --json``) in ``folders``."""
    for folder in folders:
        for name in CLEAN_REPORTS:
            path = Path(folder) / name
            if path.is_file():
                return path
    return None


def clean_counts(path: Path) -> list[dict]:
    """Counts from a cleaning report, tolerant of its shape: a ``counts``/``summary`` mapping, top-level numbers,
    top-level lists (counted), or JSON lines of ``{issue|kind|check: ...}`` records (counted per issue).

    Returns:
        Rows ``{check, count}``; [] when nothing countable is found or the file is unreadable.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip().startswith("{") and _is_json(line)]
    if isinstance(data, dict):
        data = data.get("counts") or data.get("summary") or data
        if isinstance(data, dict):
            rows = [{"check": str(k).replace("_", " "), "count": len(v) if isinstance(v, list) else int(v)}
                    for k, v in data.items()
                    if isinstance(v, list) or (isinstance(v, int | float) and not isinstance(v, bool))]
            return rows
    if isinstance(data, list):
        tally: dict[str, int] = {}
        for rec in data:
            if isinstance(rec, dict):
                key = str(rec.get("issue") or rec.get("kind") or rec.get("check") or rec.get("type") or "issue")
                tally[key] = tally.get(key, 0) + 1
        return [{"check": k.replace("_", " "), "count": v} for k, v in tally.items()]
    return []


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


# performance ----------------------------------------------------------------------------------------------------------

def per_class_rows(metrics: dict) -> list[dict]:
    """metrics.json's per-class table with rounded values."""
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in metrics.get("per_class", [])]


def cell_grid(k: int) -> tuple[list[int], list[int]]:
    """Row (true) and column (predicted) index of every confusion-matrix cell, row-major."""
    rows, cols = np.divmod(np.arange(k * k), k)
    return rows.tolist(), cols.tolist()


def selected_cell(selection: Any) -> tuple[int, int] | None:
    """(true, predicted) of the clicked cell from a Plotly selection event (points carry ``customdata=[i, j]``)."""
    points = (selection or {}).get("points") if isinstance(selection, dict) else getattr(selection, "points", None)
    for point in points or []:
        data = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(data, list | tuple) and len(data) >= 2:
            return int(data[0]), int(data[1])
    return None


def cell_indices(labels: np.ndarray, probs: np.ndarray, true_index: int, pred_index: int) -> np.ndarray:
    """Test images of class ``true_index`` predicted as ``pred_index``, most confident first (all of them)."""
    from imgclf.evaluation.analysis import pair_examples

    return pair_examples(labels, probs, true_index, pred_index, n=len(labels))


# classifier -----------------------------------------------------------------------------------------------------------

def check_upload(name: str, data: bytes, max_pixels: int, max_bytes: int = MAX_UPLOAD_BYTES,
                 draft_size: int | None = None):
    """Decode an uploaded file after checking its size; returns the PIL image (EXIF-rotated; a JPEG decoded at a
    reduced scale whose shortest side stays >= ``draft_size`` when given).

    Raises:
        ImageError: one line naming the file: too many bytes or pixels, empty, not an image, truncated.
    """
    from imgclf.data.images import ImageError, open_image

    if len(data) > max_bytes:
        raise ImageError(f"{name}: file too large ({len(data):,} bytes > limit {max_bytes:,})")
    return open_image(bytes(data), max_pixels=min(max_pixels, MAX_UPLOAD_PIXELS), draft_size=draft_size, name=name)


def display_copy(image, max_side: int = 512):
    """A copy of a PIL image no larger than ``max_side`` (what the page shows; the model sees the original)."""
    scale = max_side / max(image.size)
    if scale >= 1:
        return image.copy()
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))


# findings -------------------------------------------------------------------------------------------------------------

def findings(metrics: dict, pairs: list[dict], calibration: dict | None, epochs: dict[str, np.ndarray],
             classes: list[str]) -> list[dict]:
    """What the evidence says, auto-filled from the run: rows ``{topic, finding}`` in reading order.

    Args:
        metrics: metrics.json (accuracy, macro_f1, per_class).
        pairs: most-confused pairs (``analysis.most_confused``).
        calibration: ``analysis.calibration`` output, or None.
        epochs: metrics.csv columns (``report.read_epochs``).
    """
    out = [{"topic": "overall", "finding": _overall(metrics, len(classes))}]
    out += [{"topic": "where it fails", "finding": f} for f in _failures(pairs)]
    out += [{"topic": "classes to improve", "finding": f} for f in _weak_classes(metrics.get("per_class", []))]
    if calibration:
        out.append({"topic": "calibration", "finding": _calibration(calibration, metrics.get("accuracy"))})
    training = _training(epochs)
    if training:
        out.append({"topic": "training", "finding": training})
    return out


def _overall(metrics: dict, k: int) -> str:
    acc, f1, n = metrics.get("accuracy"), metrics.get("macro_f1"), metrics.get("n_test")
    if acc is None:
        return "the run has no test metrics (run `imgclf evaluate`)"
    return (f"test accuracy {acc:.1%}" + (f", macro F1 {f1:.3f}" if f1 is not None else "")
            + (f" on {n} images" if n else "") + f"; chance level with {k} classes is {1 / max(k, 1):.1%}")


def _failures(pairs: list[dict], top: int = 3) -> list[str]:
    if not pairs:
        return ["no mistakes on the test set"]
    return [f"{p['true']} taken for {p['predicted']}: {p['count']} images ({p['share']:.0%} of {p['true']})"
            for p in pairs[:top]]


def _weak_classes(per_class: list[dict], top: int = 3) -> list[str]:
    rows = [r for r in per_class if r.get("support")]
    if len(rows) < 2:
        return []
    mean_f1 = float(np.mean([r["f1"] for r in rows]))
    weak = sorted(rows, key=lambda r: r["f1"])[:top]
    out = []
    for r in weak:
        if r["f1"] >= mean_f1:
            break
        why = ("missed more often than wrongly predicted (recall < precision): collect more, and more varied, "
               "training images of it" if r["recall"] < r["precision"] else
               "other classes are often predicted as it (precision <= recall): see which ones in the confusion matrix")
        out.append(f"{r['class']}: F1 {r['f1']:.3f} vs mean {mean_f1:.3f}, recall {r['recall']:.3f}, "
                   f"precision {r['precision']:.3f}; {why}")
    return out


def _calibration(cal: dict, accuracy: float | None) -> str:
    before, t = cal["before"], cal.get("temperature")
    text = f"ECE {before['ece']:.3f}"
    if t is not None and cal.get("after"):
        verdict = ("over-confident" if t > 1.1 else "under-confident" if t < 0.9 else "about right")
        return (text + f"; temperature scaling (T = {t:.2f}, fitted on validation) brings it to "
                f"{cal['after']['ece']:.3f}: the model is {verdict}")
    bins = before["bins"]
    counts = np.asarray(bins["count"], dtype=np.float64)
    filled = counts > 0
    if accuracy is None or not filled.any():
        return text
    confidence = float(np.sum(np.asarray(bins["confidence"])[filled] * counts[filled]) / counts.sum())
    verdict = ("over-confident" if confidence > accuracy + 0.05 else
               "under-confident" if confidence < accuracy - 0.05 else "about right")
    return text + f"; mean confidence {confidence:.1%} vs accuracy {accuracy:.1%}: {verdict}"


def _training(epochs: dict[str, np.ndarray]) -> str:
    train, val = epochs.get("train_acc"), epochs.get("val_acc")
    if train is None or val is None or not len(val) or np.isnan(val).all():
        return ""
    gap = float(train[-1] - val[-1])
    parts = [f"final train accuracy {train[-1]:.1%}, validation {val[-1]:.1%}"]
    if gap > 0.1:
        parts.append("a gap above 10 points suggests overfitting (more data, augmentation or regularisation)")
    best = int(np.nanargmax(val))
    if best == len(val) - 1 and len(val) > 1:
        parts.append("validation accuracy was still rising at the last epoch: training longer may help")
    return "; ".join(parts)


def findings_markdown(rows: list[dict], notes: str, title: str) -> str:
    """The findings and the free notes as one markdown document (what the page offers to download)."""
    lines = [f"# Findings: {title}", ""]
    topic = None
    for r in rows:
        if r["topic"] != topic:
            topic = r["topic"]
            lines += ["", f"**{topic}**", ""]
        lines.append(f"- {r['finding']}")
    return "\n".join(lines).strip() + "\n\n" + notes.strip() + "\n"


def env_threads(default: int = 1) -> int:
    """Torch threads for the dashboard process: ``IMGCLF_DASHBOARD_THREADS`` or ``default``."""
    try:
        return max(1, int(os.environ.get("IMGCLF_DASHBOARD_THREADS", default)))
    except ValueError:
        return default
