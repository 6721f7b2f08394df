"""Classification metrics as pure functions over numpy arrays (checked against scikit-learn in the tests).

Conventions: ``y_true``/``y_pred`` are int arrays of class indices, ``probs`` is (N, K) with rows summing to 1.
A precision or recall whose denominator is zero is 0 (as scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts; row = true class, column = predicted class."""
    idx = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the recall view); empty rows stay 0."""
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros(cm.shape, dtype=np.float64), where=sums > 0)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` highest scores (ties broken by class order)."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true)[:, None], axis=1))) if len(y_true) else 0.0


def precision_recall_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int):
    """Per-class (precision, recall, f1, support) arrays."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    boundaries = np.flatnonzero(np.diff(sorted_x)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    ranks = np.empty(len(x), dtype=np.float64)
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2
    return ranks


def binary_roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney statistic; NaN if one class is absent."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, float]:
    """One-vs-rest ROC-AUC per class and their macro mean over classes present in ``y_true``."""
    y_true = np.asarray(y_true)
    per_class = np.array([binary_roc_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])])
    valid = ~np.isnan(per_class)
    return per_class, float(per_class[valid].mean()) if valid.any() else float("nan")


def roc_curve(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) at every distinct score threshold, from (0, 0) to (1, 1)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    sorted_scores, pos = np.asarray(scores)[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(pos) - 1]
    tps = np.cumsum(pos)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    n_pos, n_neg = max(pos.sum(), 1), max((~pos).sum(), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def classification_report(y_true: np.ndarray, probs: np.ndarray, classes: list[str], top_k: int = 5) -> dict:
    """Every headline metric of a test set as plain Python values (fractions in [0, 1])."""
    y_true = np.asarray(y_true)
    num_classes = len(classes)
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_f1(y_true, y_pred, num_classes)
    auc_per_class, auc_macro = roc_auc_ovr(y_true, probs) if num_classes > 1 else (np.full(1, np.nan), float("nan"))
    k = min(top_k, num_classes)
    present = (support > 0) | (np.bincount(y_pred, minlength=num_classes) > 0)  # scikit-learn's label set
    return {
        "accuracy": accuracy(y_true, y_pred),
        f"top{k}_accuracy": top_k_accuracy(y_true, probs, k),
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "roc_auc": auc_macro,
        "n_test": int(len(y_true)),
        "per_class": [
            {"class": c, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
             "support": int(support[i]), "roc_auc": float(auc_per_class[i]) if num_classes > 1 else float("nan")}
            for i, c in enumerate(classes)
        ],
        "confusion_matrix": confusion_matrix(y_true, y_pred, num_classes).tolist(),
    }
