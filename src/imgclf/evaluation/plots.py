"""Drawing the evaluation files: figures from already computed arrays (the computing lives in metrics.py).

The figures themselves are drawn by ``report_plots`` (shared with the HTML report and the dashboard).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_confusion_matrix(cm: np.ndarray, classes: list[str], path: str | Path) -> Path:
    """Counts and row-normalised confusion matrices side by side, saved as PNG."""
    from imgclf.evaluation.report_plots import confusion_png

    Path(path).write_bytes(confusion_png(cm, classes))
    return Path(path)
