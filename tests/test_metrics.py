"""imgclf.evaluation.metrics against scikit-learn on random inputs (missing classes, tied scores)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from imgclf.evaluation import metrics as m

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2 renamed trapz


def _case(seed: int, k: int = 5, n: int = 60, ties: bool = False, missing: bool = False):
    """(y_true, probs) with optional coarse (tied) scores and classes absent from y_true and predictions."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    if missing:
        y_true[y_true == k - 1] = 0  # class k-1 never occurs
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y_true]
    if missing:
        logits[:, 1] -= 10  # class 1 is never predicted
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if ties:
        probs = np.round(probs * 4) / 4 + 1e-9  # few distinct values: many ties
        probs /= probs.sum(1, keepdims=True)
    return y_true, probs


CASES = [dict(seed=s, ties=t, missing=mi) for s in range(4) for t in (False, True) for mi in (False, True)]
IDS = [f"seed{c['seed']}{'-ties' if c['ties'] else ''}{'-missing' if c['missing'] else ''}" for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_confusion_matrix_and_accuracy(case):
    y_true, probs = _case(**case)
    y_pred = probs.argmax(1)
    np.testing.assert_array_equal(m.confusion_matrix(y_true, y_pred, 5),
                                  skm.confusion_matrix(y_true, y_pred, labels=range(5)))
    assert m.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_accuracy(case, k):
    y_true, probs = _case(**case)
    ours = m.top_k_accuracy(y_true, probs, k)
    if not case["ties"]:
        assert ours == pytest.approx(skm.top_k_accuracy_score(y_true, probs, k=k, labels=range(5)))
    # ties are broken by class order, as argmax does (scikit-learn breaks them the other way)
    top = [sorted(range(5), key=lambda c, row=row: (-row[c], c))[:k] for row in probs]
    assert ours == pytest.approx(np.mean([t in row for t, row in zip(y_true, top, strict=True)]))
    if k == 1:
        assert ours == m.accuracy(y_true, probs.argmax(1))


def test_top_k_with_k_above_classes():
    y_true, probs = _case(0, k=3)
    assert m.top_k_accuracy(y_true, probs, 10) == 1.0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_precision_recall_f1(case):
    y_true, probs = _case(**case)
    y_pred = probs.argmax(1)
    precision, recall, f1, support = m.precision_recall_f1(y_true, y_pred, 5)
    sp, sr, sf, ss = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    np.testing.assert_allclose(precision, sp)
    np.testing.assert_allclose(recall, sr)
    np.testing.assert_allclose(f1, sf)
    np.testing.assert_array_equal(support, ss)
    report = m.classification_report(y_true, probs, [f"c{i}" for i in range(5)])
    for ours, name in (("macro_precision", "precision"), ("macro_recall", "recall"), ("macro_f1", "f1-score")):
        expected = skm.classification_report(y_true, y_pred, output_dict=True, zero_division=0)["macro avg"][name]
        assert report[ours] == pytest.approx(expected), ours


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_binary_roc_auc(seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 50)
    scores = rng.normal(size=50) + y
    if ties:
        scores = np.round(scores)
    assert m.binary_roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores))


def test_binary_roc_auc_edge_cases():
    assert np.isnan(m.binary_roc_auc(np.ones(5), np.arange(5)))
    assert m.binary_roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert m.binary_roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert m.binary_roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_roc_auc_ovr_macro(case):
    y_true, probs = _case(**case)
    per_class, macro = m.roc_auc_ovr(y_true, probs)
    present = np.unique(y_true)
    for c in range(5):
        if c in present:
            assert per_class[c] == pytest.approx(skm.roc_auc_score(y_true == c, probs[:, c]))
        else:
            assert np.isnan(per_class[c])  # undefined without positives
    if len(present) == 5:
        assert macro == pytest.approx(skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))
    else:
        assert macro == pytest.approx(np.mean([skm.roc_auc_score(y_true == c, probs[:, c]) for c in present]))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_roc_curve(seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80).astype(bool)
    scores = rng.normal(size=80) + y
    if ties:
        scores = np.round(scores * 2) / 2
    fpr, tpr = m.roc_curve(y, scores)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert trapezoid(tpr, fpr) == pytest.approx(skm.roc_auc_score(y, scores))
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_normalize_rows():
    cm = np.array([[2, 2], [0, 0]])
    np.testing.assert_allclose(m.normalize_rows(cm), [[0.5, 0.5], [0, 0]])


def test_classification_report_binary_and_shapes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p1 = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, 40), 0, 1)
    probs = np.stack([1 - p1, p1], axis=1)
    report = m.classification_report(y, probs, ["no", "yes"])
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert report["top2_accuracy"] == 1.0 and report["n_test"] == 40
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))
    assert [r["class"] for r in report["per_class"]] == ["no", "yes"]
    assert sum(r["support"] for r in report["per_class"]) == 40
    assert np.array(report["confusion_matrix"]).sum() == 40
