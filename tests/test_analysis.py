"""Pure error-analysis functions on synthetic probabilities (no model, no files)."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.evaluation import analysis


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _calibrated(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from the predicted distribution itself: calibrated by construction."""
    rng = np.random.default_rng(seed)
    probs = _softmax(rng.normal(0, 2.0, (n, k)))
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return probs, labels


def test_ece_of_a_calibrated_set_is_near_zero_and_of_an_overconfident_one_is_not():
    probs, labels = _calibrated(20_000, 5)
    assert analysis.reliability(probs, labels)["ece"] < 0.02
    sharp = analysis.apply_temperature(probs, 0.3)  # same ranking, far more confident
    assert analysis.reliability(sharp, labels)["ece"] > 0.1


def test_reliability_bins_count_every_sample_once_and_match_a_hand_computation():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    bins = analysis.reliability(probs, labels, n_bins=10)
    assert bins["count"].sum() == 4
    # bin (0.9, 1]: conf 0.95, acc 0.5; bin (0.5, 0.6]: conf 0.55, acc 1; bin (0.6, 0.7]: conf 0.7, acc 1
    expected = (2 * abs(0.5 - 0.95) + abs(1 - 0.55) + abs(1 - 0.7)) / 4
    assert bins["ece"] == pytest.approx(expected)
    assert np.isnan(bins["accuracy"][0])  # an empty bin


def test_temperature_scaling_fitted_on_validation_reduces_test_nll_of_an_overconfident_model():
    probs, labels = _calibrated(6000, 10, seed=1)
    over = analysis.apply_temperature(probs, 0.4)  # what an over-confident network outputs
    val, test = slice(0, 3000), slice(3000, None)
    t = analysis.fit_temperature(over[val], labels[val])
    assert t == pytest.approx(2.5, rel=0.15)  # undoes the 0.4
    cal = analysis.calibration(over[test], labels[test], over[val], labels[val])
    assert cal["temperature"] == t
    assert cal["after"]["nll"] < cal["before"]["nll"] - 0.1
    assert cal["after"]["ece"] < cal["before"]["ece"]


def test_calibration_without_validation_reports_only_before():
    probs, labels = _calibrated(500, 3)
    cal = analysis.calibration(probs, labels)
    assert cal["after"] is None and cal["temperature"] is None and cal["before"]["nll"] > 0


def test_most_confused_counts_directional_pairs_in_order():
    classes = ["cat", "dog", "bird"]
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    preds = np.array([1, 1, 1, 0, 0, 1, 0, 2, 2])  # cat->dog x3, dog->cat x1, bird->cat x1
    probs = np.eye(3)[preds] * 0.8 + 0.2 / 3
    pairs = analysis.most_confused(labels, probs, classes)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs[:1]] == [("cat", "dog", 3)]
    assert {(p["true"], p["predicted"], p["count"]) for p in pairs[1:]} == {("dog", "cat", 1), ("bird", "cat", 1)}
    assert pairs[0]["share"] == pytest.approx(0.75)
    assert analysis.most_confused(labels, np.eye(3)[labels], classes) == []


def test_confidently_wrong_and_pair_examples_sort_by_predicted_probability():
    labels = np.array([0, 0, 1, 1, 0])
    probs = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.99, 0.01], [0.9, 0.1]])
    assert analysis.confidently_wrong(labels, probs).tolist() == [3, 0, 1]
    assert analysis.confidently_wrong(labels, probs, n=1).tolist() == [3]
    assert analysis.pair_examples(labels, probs, 0, 1).tolist() == [0, 1]


def test_least_sure_by_margin_and_by_entropy():
    probs = np.array([[0.9, 0.05, 0.05], [0.5, 0.49, 0.01], [0.34, 0.33, 0.33], [0.6, 0.2, 0.2]])
    assert analysis.margins(probs) == pytest.approx([0.85, 0.01, 0.01, 0.4])
    assert analysis.least_sure(probs, n=2, by="margin").tolist() == [1, 2]
    assert analysis.least_sure(probs, n=1, by="entropy").tolist() == [2]
    with pytest.raises(ValueError):
        analysis.least_sure(probs, by="variance")


def test_roc_curves_skip_absent_classes_and_carry_the_auc():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.45, 0.55, 0.0]])
    curves = analysis.roc_curves(labels, probs, ["a", "b", "c"])
    assert [c["class"] for c in curves] == ["a", "b"]
    assert curves[1]["auc"] == pytest.approx(1.0)
    assert curves[1]["fpr"][0] == 0 and curves[1]["tpr"][-1] == 1


def test_mistakes_by_original_class_trace_grouped_errors():
    classes, orig = ["vehicle", "animal"], ["car", "ship", "cat", "dog"]
    orig_labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    preds = np.array([0, 0, 1, 1, 1, 1, 1, 0])  # both ships and one dog wrong
    rows = analysis.mistakes_by_original(labels, np.eye(2)[preds], orig_labels, classes, orig)
    assert rows[0] == {"original": "ship", "group": "vehicle", "n": 2, "mistakes": 2, "error_rate": 1.0,
                       "predicted_as": {"animal": 2}}
    assert rows[1]["original"] == "dog" and rows[1]["mistakes"] == 1
    assert {r["original"]: r["mistakes"] for r in rows[2:]} == {"car": 0, "cat": 0}
