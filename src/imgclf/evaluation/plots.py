"""Drawing: figures from already computed arrays (the computing lives in metrics.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(cm: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Counts and row-normalised confusion matrices side by side, saved as PNG."""
    from imgclf.evaluation.metrics import normalize_rows

    plt = _pyplot()
    k = len(classes)
    side = min(4 + 0.45 * k, 30)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side), constrained_layout=True)
    for ax, data, name, fmt in ((axes[0], cm, "counts", "d"), (axes[1], normalize_rows(cm), "row-normalised", ".2f")):
        im = ax.imshow(data, cmap="Blues")
        ax.set_title(f"{title} confusion matrix ({name})".strip())
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 30:
            ax.set_xticks(range(k), classes, rotation=45, ha="right")
            ax.set_yticks(range(k), classes)
            threshold = data.max() / 2 if data.size else 0
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=8,
                            color="white" if data[i, j] > threshold else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
