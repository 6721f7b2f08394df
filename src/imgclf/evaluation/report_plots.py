"""Drawing the report's figures as PNG bytes (matplotlib Agg) from data computed in ``analysis.py``.

Every function takes plain arrays/dicts and returns the PNG file's bytes, so the HTML report embeds them and the
dashboard can show them (or redraw the same data with its own widgets).
"""

from __future__ import annotations

import io

import numpy as np

DPI = 80


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    _pyplot().close(fig)
    return buf.getvalue()


def curves_png(epochs: dict[str, np.ndarray]) -> bytes:
    """Training and validation loss and accuracy per epoch (columns of metrics.csv)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    x = np.asarray(epochs.get("epoch", []), dtype=float) + 1
    for ax, what in zip(axes, ("loss", "acc"), strict=True):
        for split, style in (("train", "-o"), ("val", "-s")):
            y = np.asarray(epochs.get(f"{split}_{what}", []), dtype=float)
            if len(y) and np.isfinite(y).any():
                ax.plot(x, y, style, markersize=3, label=f"{split}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if what == "acc" else "loss")
        ax.set_title("accuracy" if what == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return _png(fig)


def confusion_png(cm: np.ndarray, classes: list[str]) -> bytes:
    """Counts and row-normalised confusion matrices side by side (cell values written up to 30 classes)."""
    from imgclf.evaluation.metrics import normalize_rows

    plt = _pyplot()
    k = len(classes)
    side = min(3.5 + 0.42 * k, 22)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side), constrained_layout=True)
    for ax, data, name, fmt in ((axes[0], cm, "counts", "d"), (axes[1], normalize_rows(cm), "row-normalised", ".2f")):
        im = ax.imshow(data, cmap="Blues")
        ax.set_title(f"{name} (rows: true, columns: predicted)")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 30:
            ax.set_xticks(range(k), classes, rotation=45, ha="right")
            ax.set_yticks(range(k), classes)
            threshold = data.max() / 2 if data.size else 0
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=7,
                            color="white" if data[i, j] > threshold else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def roc_png(curves: list[dict], max_legend: int = 20) -> bytes:
    """One-vs-rest ROC curves, one line per class, AUC in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5), constrained_layout=True)
    cmap = plt.get_cmap("tab20" if len(curves) > 10 else "tab10")
    for i, c in enumerate(curves):
        ax.plot(c["fpr"], c["tpr"], color=cmap(i % cmap.N), linewidth=1.2,
                label=f"{c['class']} (AUC {c['auc']:.3f})" if i < max_legend else None)
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("one-vs-rest ROC")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    if curves:
        ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def reliability_png(before: dict, after: dict | None = None, temperature: float | None = None) -> bytes:
    """Reliability diagrams (accuracy vs confidence per bin, with the ECE), before and after temperature scaling."""
    plt = _pyplot()
    panels = [("uncalibrated", before)] + ([(f"temperature T = {temperature:.2f}", after)] if after else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), constrained_layout=True, squeeze=False)
    for ax, (title, part) in zip(axes[0], panels, strict=True):
        bins = part["bins"]
        filled = bins["count"] > 0
        left, width = bins["edges"][:-1][filled], np.diff(bins["edges"])[filled]
        acc, conf = bins["accuracy"][filled], bins["confidence"][filled]
        ax.bar(left, acc, width=width, align="edge", color="#4c72b0", edgecolor="white", label="accuracy")
        ax.bar(left, conf - acc, bottom=acc, width=width, align="edge", facecolor="none", hatch="///",
               edgecolor="#c44e52", linewidth=0.8, label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}: ECE {part['ece']:.3f}, NLL {part['nll']:.3f}")
        ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def thumbnail_png(image: np.ndarray, max_side: int = 96) -> bytes:
    """A uint8 (C, H, W) image as a small PNG (larger images are shrunk to ``max_side``; small ones kept)."""
    from PIL import Image

    arr = image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
    img = Image.fromarray(arr)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
