"""Error analysis of a test set as pure functions over arrays: what the report and the dashboard show.

Conventions (as in ``metrics.py``): ``labels`` are int class indices (N,), ``probs`` is (N, K) with rows summing
to 1. Functions return plain values (dicts, lists, numpy arrays) and draw nothing; see ``report_plots.py``.

Examples:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    >>> labels = np.array([0, 1, 1])
    >>> most_confused(labels, probs, ["cat", "dog"])[0]["count"]
    1
    >>> confidently_wrong(labels, probs).tolist()
    [2]
"""

from __future__ import annotations

import numpy as np

from imgclf.evaluation.metrics import binary_roc_auc, confusion_matrix, roc_curve

# which mistakes and doubts ------------------------------------------------------------------------------------------


def most_confused(labels: np.ndarray, probs: np.ndarray, classes: list[str], top: int = 10,
                  min_count: int = 1) -> list[dict]:
    """The (true, predicted) class pairs the model mixes up most often, by count (directional, like fastai's).

    Returns:
        Up to ``top`` dicts ``{true, predicted, true_index, pred_index, count, share}``; ``share`` is the count over
        the true class's support.
    """
    k = len(classes)
    cm = confusion_matrix(labels, probs.argmax(axis=1), k)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    support = cm.sum(axis=1)
    flat = np.argsort(-off, axis=None, kind="stable")
    pairs = []
    for index in flat[:top]:
        i, j = divmod(int(index), k)
        if off[i, j] < min_count:
            break
        pairs.append({"true": classes[i], "predicted": classes[j], "true_index": i, "pred_index": j,
                      "count": int(off[i, j]), "share": float(off[i, j] / support[i]) if support[i] else 0.0})
    return pairs


def pair_examples(labels: np.ndarray, probs: np.ndarray, true_index: int, pred_index: int, n: int = 6) -> np.ndarray:
    """Indices of test images of class ``true_index`` predicted as ``pred_index``, most confident first."""
    pred = probs.argmax(axis=1)
    idx = np.flatnonzero((np.asarray(labels) == true_index) & (pred == pred_index))
    return idx[np.argsort(-probs[idx, pred_index], kind="stable")][:n]


def confidently_wrong(labels: np.ndarray, probs: np.ndarray, n: int = 40) -> np.ndarray:
    """Indices of the wrong predictions, highest predicted probability first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != np.asarray(labels))
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of each row (0 = a coin toss between two classes)."""
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top2 = np.partition(probs, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row in nats."""
    p = np.clip(probs.astype(np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def least_sure(probs: np.ndarray, n: int = 40, by: str = "margin") -> np.ndarray:
    """Indices of the images the model is least sure about: smallest top-1/top-2 margin, or highest entropy."""
    if by not in ("margin", "entropy"):
        raise ValueError(f"by must be 'margin' or 'entropy', got {by!r}")
    score = margins(probs) if by == "margin" else -entropy(probs)
    return np.argsort(score, kind="stable")[:n]


def mistakes_by_original(labels: np.ndarray, probs: np.ndarray, orig_labels: np.ndarray, classes: list[str],
                         orig_classes: list[str]) -> list[dict]:
    """For grouped labels: per original class, its group, test count, mistakes and what it was mistaken for.

    Returns:
        One dict per original class present, most mistakes first: ``{original, group, n, mistakes, error_rate,
        predicted_as}`` where ``predicted_as`` maps wrong group names to counts.
    """
    pred = probs.argmax(axis=1)
    labels, orig_labels = np.asarray(labels), np.asarray(orig_labels)
    rows = []
    for o in np.unique(orig_labels):
        sel = orig_labels == o
        wrong = sel & (pred != labels)
        counts = np.bincount(pred[wrong], minlength=len(classes))
        rows.append({"original": orig_classes[o], "group": classes[int(labels[sel][0])], "n": int(sel.sum()),
                     "mistakes": int(wrong.sum()), "error_rate": float(wrong.sum() / sel.sum()),
                     "predicted_as": {classes[c]: int(counts[c]) for c in np.flatnonzero(counts)}})
    return sorted(rows, key=lambda r: (-r["mistakes"], r["original"]))


# ROC ------------------------------------------------------------------------------------------------------------------


def roc_curves(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> list[dict]:
    """One-vs-rest ROC curve of each class present in ``labels``: ``{class, fpr, tpr, auc}``."""
    labels = np.asarray(labels)
    curves = []
    for c, name in enumerate(classes):
        positive = labels == c
        if not positive.any() or positive.all():
            continue
        fpr, tpr = roc_curve(positive, probs[:, c])
        curves.append({"class": name, "fpr": fpr, "tpr": tpr, "auc": binary_roc_auc(positive, probs[:, c])})
    return curves


# calibration ----------------------------------------------------------------------------------------------------------


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict:
    """Reliability-diagram bins and the expected calibration error of the top-1 confidence.

    ECE = sum over equal-width confidence bins of (bin share) x |accuracy - mean confidence| (Guo et al., 2017).

    Returns:
        ``{ece, edges (n_bins+1,), confidence, accuracy, count}``; empty bins hold NaN confidence and accuracy.
    """
    conf = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (lo, hi], first bin [0, hi]
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(accuracy[filled] - mean_conf[filled])) / max(len(conf), 1))
    return {"ece": ece, "edges": edges, "confidence": mean_conf, "accuracy": accuracy, "count": count}


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (nats)."""
    p = np.clip(probs[np.arange(len(labels)), np.asarray(labels)].astype(np.float64), 1e-12, 1.0)
    return float(-np.log(p).mean()) if len(p) else float("nan")


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log-probabilities / T: T > 1 softens over-confident predictions, T < 1 sharpens them."""
    z = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature minimising the NLL of ``probs`` (fit it on VALIDATION predictions, never on test).

    The NLL is convex in 1/T, so it is unimodal in log T and a golden-section search over [lo, hi] finds it.
    """
    if len(labels) == 0:
        return 1.0
    a, b = np.log(lo), np.log(hi)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(apply_temperature(probs, np.exp(c)), labels), nll(apply_temperature(probs, np.exp(d)), labels)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(apply_temperature(probs, np.exp(c)), labels)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(apply_temperature(probs, np.exp(d)), labels)
    return float(np.exp((a + b) / 2))


def calibration(probs: np.ndarray, labels: np.ndarray, val_probs: np.ndarray | None = None,
                val_labels: np.ndarray | None = None, n_bins: int = 15) -> dict:
    """ECE, NLL and reliability bins of the test predictions, and after temperature scaling fitted on validation.

    Returns:
        ``{before: {ece, nll, bins}, temperature, n_val, after: {ece, nll, bins} | None}``; ``after`` is None
        without validation predictions.
    """
    def summary(p: np.ndarray) -> dict:
        bins = reliability(p, labels, n_bins)
        return {"ece": bins["ece"], "nll": nll(p, labels), "bins": bins}

    out = {"before": summary(probs), "temperature": None, "n_val": 0, "after": None}
    if val_probs is not None and val_labels is not None and len(val_labels):
        t = fit_temperature(val_probs, val_labels)
        out["temperature"], out["n_val"] = t, int(len(val_labels))
        out["after"] = summary(apply_temperature(probs, t))
    return out
