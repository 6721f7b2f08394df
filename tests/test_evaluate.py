"""imgclf.evaluate: re-evaluating a run (single seed and group) from its run folder."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

import imgclf
from conftest import TRAINED_KW
from imgclf.errors import ImgclfError
from imgclf.evaluation.evaluate import predict_probs, summarize_group, tta_level
from imgclf.training.api import train


def _copy(run_dir, tmp_path):
    dest = tmp_path / run_dir.name
    shutil.copytree(run_dir, dest)
    return dest


def test_evaluate_reproduces_training_metrics(trained_run, tmp_path):
    run = _copy(trained_run["run_dir"], tmp_path)
    at_training = json.loads((run / "metrics.json").read_text())
    probs_at_training = np.load(run / "test_predictions.npz")["probs"]
    for name in ("per_class.csv", "confusion_matrix.png", "test_predictions.npz", "metrics.json"):
        (run / name).unlink()
    metrics = imgclf.evaluate(run, progress=False)  # reloads the dataset and the recorded test split
    assert metrics["accuracy"] == at_training["accuracy"]
    assert metrics["macro_f1"] == pytest.approx(at_training["macro_f1"])
    assert metrics["confusion_matrix"] == at_training["confusion_matrix"]
    assert json.loads((run / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    np.testing.assert_allclose(np.load(run / "test_predictions.npz")["probs"], probs_at_training, atol=1e-6)
    with open(run / "per_class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == ["blue", "green", "red"]
    assert sum(int(r["support"]) for r in rows) == metrics["n_test"] == 6
    png = (run / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_evaluate_by_name_under_runs_dir(trained_run, tmp_path):
    runs = tmp_path / "runs"
    _copy(trained_run["run_dir"], runs)
    metrics = imgclf.evaluate("shared", runs_dir=runs, progress=False)
    assert metrics["accuracy"] == trained_run["metrics"]["accuracy"]


def test_evaluate_group(trained_run, tmp_path):
    result = train(dataset=f"folder:{trained_run['data']}", runs_dir=str(tmp_path), name="g", seeds=2, **TRAINED_KW)
    group = result.run_dir
    members = [json.loads((group / m / "metrics.json").read_text())["accuracy"] for m in ("seed-0", "seed-1")]
    (group / "metrics.json").unlink()
    metrics = imgclf.evaluate(group, progress=False)
    assert metrics["seeds"] == 2
    assert metrics["accuracy"] == pytest.approx(np.mean(members))
    assert metrics["accuracy_std"] == pytest.approx(np.std(members, ddof=1))
    assert [m["accuracy"] for m in metrics["members"]] == members
    assert json.loads((group / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    best = max(("seed-0", "seed-1"), key=lambda m: json.loads((group / m / "run.json").read_text())["best_val_acc"])
    assert imgclf.Predictor(group).meta["run"] == best  # a group deploys its best seed by validation


def test_evaluate_errors(trained_run, tmp_path):
    with pytest.raises(ImgclfError, match="run folder not found"):
        imgclf.evaluate(tmp_path / "missing")
    run = _copy(trained_run["run_dir"], tmp_path)
    (run / "model.pt").unlink()
    with pytest.raises(ImgclfError, match="has no model.pt"):
        imgclf.evaluate(run, progress=False)


def test_evaluate_when_an_image_went_missing(trained_run, tmp_path):
    data = tmp_path / "photos"
    shutil.copytree(trained_run["data"], data)
    run = _copy(trained_run["run_dir"], tmp_path / "runs")
    cfg = (run / "config.yaml").read_text().replace(str(trained_run["data"]), str(data))
    (run / "config.yaml").write_text(cfg)
    test_id = json.loads((run / "split.json").read_text())["test"][0]
    (data / test_id).unlink()
    with pytest.raises(ImgclfError) as err:
        imgclf.evaluate(run, progress=False)
    assert repr(test_id) in str(err.value) and "missing" in str(err.value)


def test_summarize_group_ignores_missing_values(tmp_path):
    results = [{"accuracy": 0.5, "roc_auc": None, "flag": True}, {"accuracy": 0.7, "roc_auc": None, "flag": False}]
    summary = summarize_group(tmp_path, results)
    assert summary["accuracy"] == pytest.approx(0.6) and summary["accuracy_std"] == pytest.approx(np.std([.5, .7],
                                                                                                          ddof=1))
    assert "flag" not in summary and "roc_auc" not in summary


def test_tta_level_and_predict_probs():
    assert tta_level({"tta": True, "flip": True}) == 2
    assert tta_level({"tta": True, "flip": False}) == 0  # digits are never mirrored
    assert tta_level({"tta": False, "flip": True}) == 0
    from imgclf.models.io import build_classifier

    model = build_classifier({"model": "lenet5", "num_classes": 5, "net_channels": 3, "mean": [0.5] * 3,
                              "std": [0.2] * 3, "input_size": 16})
    images = np.random.default_rng(0).integers(0, 256, (7, 3, 8, 8), dtype=np.uint8)
    probs = predict_probs(model, images, batch_size=3)
    assert probs.shape == (7, 5) and np.allclose(probs.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(predict_probs(model, images, batch_size=7), probs, atol=1e-6)  # batching-invariant
    mirrored = predict_probs(model, images[..., ::-1].copy(), tta=1)
    np.testing.assert_allclose(mirrored, predict_probs(model, images, tta=1), atol=1e-5)
