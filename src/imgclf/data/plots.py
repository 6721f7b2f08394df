"""Figures of the dataset reports (matplotlib, Agg backend); each function takes computed numbers, returns PNG bytes.

The numbers come from ``imgclf.data.explore`` and ``imgclf.data.clean``; nothing here computes statistics.
"""

from __future__ import annotations

import io

import numpy as np

_COLORS = {"R": "tab:red", "G": "tab:green", "B": "tab:blue", "L": "0.3"}


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **kw):
    """(figure, 2-D array of axes) drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width, height), constrained_layout=True, squeeze=False, **kw)


def to_png(fig, dpi: int = 100) -> bytes:
    """Render and close a figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def class_counts_png(classes: list[str], counts: dict[str, list[int]]) -> bytes:
    """Horizontal bars: images per class, one colour per pool (train/test/all), stacked."""
    fig, axes = _figure(7, 0.8 + 0.28 * len(classes))
    ax = axes[0][0]
    left = np.zeros(len(classes))
    y = np.arange(len(classes))
    for name, values in counts.items():
        ax.barh(y, values, left=left, label=name)
        left += np.asarray(values)
    ax.set_yticks(y, classes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.legend(loc="lower right", fontsize=8)
    return to_png(fig)


def _hwc(img: np.ndarray) -> np.ndarray:
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def sample_grid_png(samples: dict[str, np.ndarray], max_classes: int = 20) -> bytes:
    """One row of random images per class, the class name on the left."""
    names = list(samples)[:max_classes]
    cols = max((len(v) for v in samples.values()), default=1) or 1
    fig, axes = _figure(1.1 * cols + 1.2, 1.1 * max(len(names), 1), max(len(names), 1), cols)
    for r, name in enumerate(names):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(samples[name]):
                img = _hwc(samples[name][c])
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return to_png(fig)


def sizes_png(sizes: np.ndarray) -> bytes:
    """Width against height of the original files, and the histogram of aspect ratios."""
    sizes = sizes[(sizes > 0).all(1)]
    fig, axes = _figure(9, 3.6, 1, 2)
    left, right = axes[0]
    left.scatter(sizes[:, 0], sizes[:, 1], s=6, alpha=0.4)
    left.set_xlabel("width (px)")
    left.set_ylabel("height (px)")
    left.set_title("image sizes", fontsize=10)
    right.hist(sizes[:, 0] / sizes[:, 1], bins=40, color="tab:gray")
    right.set_xlabel("aspect ratio (width / height)")
    right.set_title("aspect ratios", fontsize=10)
    return to_png(fig)


def channel_histograms_png(names: list[str], hist: list[list[int]]) -> bytes:
    """Pixel value distribution of each channel (fraction of pixels per value 0..255)."""
    fig, axes = _figure(7, 3)
    ax = axes[0][0]
    for name, counts in zip(names, hist, strict=True):
        counts = np.asarray(counts, dtype=np.float64)
        ax.plot(np.arange(256), counts / max(counts.sum(), 1), color=_COLORS.get(name), label=name, lw=1)
    ax.set_xlabel("pixel value")
    ax.set_ylabel("fraction of pixels")
    ax.set_xlim(0, 255)
    ax.legend(fontsize=8)
    return to_png(fig)


def brightness_contrast_png(brightness: np.ndarray, contrast: np.ndarray, labels: np.ndarray,
                            classes: list[str]) -> bytes:
    """Box plots per class: brightness (mean luma) and contrast (std of luma) of the images."""
    fig, grid = _figure(10, 1.0 + 0.28 * len(classes), 1, 2, sharey=True)
    axes = grid[0]
    for ax, values, title in ((axes[0], brightness, "brightness (mean luma)"),
                              (axes[1], contrast, "contrast (std of luma)")):
        data = [values[labels == k] for k in range(len(classes))]
        ax.boxplot([d if len(d) else [np.nan] for d in data], vert=False, showfliers=False, widths=0.6)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 1 if values is brightness else max(0.5, float(np.nanmax(values, initial=0.5))))
    axes[0].set_yticks(np.arange(1, len(classes) + 1), classes, fontsize=8)
    axes[0].invert_yaxis()
    return to_png(fig)
