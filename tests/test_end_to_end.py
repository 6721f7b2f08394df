"""End to end on real data: train on cifar-10-mini (vehicles vs animals), then predict a real image from a PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import imgclf
from conftest import real_dataset
from imgclf.data import load_dataset


@pytest.mark.realdata
def test_cifar10_mini_vehicles_vs_animals(tmp_path):
    data_dir = real_dataset("cifar-10-mini")
    result = imgclf.train(dataset="cifar10", data_dir=str(data_dir), classes="vehicles-vs-animals",
                          model="resnet-fast", width=0.25, epochs=1, runs_dir=str(tmp_path), name="c10",
                          progress=False, threads=1)
    metrics = result.metrics
    assert metrics["n_test"] == 1017
    assert metrics["accuracy"] > 0.6  # 0.6 is the share of animals (always guessing "animal"); ~0.88 seen
    assert metrics["roc_auc"] > 0.75
    assert [r["class"] for r in metrics["per_class"]] == ["vehicle", "animal"]
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["dataset"]["n_train"] + info["dataset"]["n_val"] == 5085

    # a real test image, written as PNG, gets the probabilities the evaluation gave it
    saved = np.load(result.run_dir / "test_predictions.npz")
    test = load_dataset("cifar10", data_dir=data_dir, classes="vehicles-vs-animals").pools["test"]
    predictor = imgclf.Predictor(result.run_dir)
    for k in (0, 1, 2):
        test_id = saved["ids"][k]
        image = test.images[test.ids.tolist().index(test_id)]
        Image.fromarray(image.transpose(1, 2, 0)).save(tmp_path / f"{k}.png")
        [prediction] = predictor.predict(tmp_path / f"{k}.png", top_k=2)
        probs = {t["label"]: t["probability"] for t in prediction["top_k"]}
        np.testing.assert_allclose([probs["vehicle"], probs["animal"]], saved["probs"][k], atol=1e-4)
