"""imgclf.training: run folders, reproducibility, seed groups, resume, options, label grouping."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from conftest import TRAINED_KW, make_folder_dataset, write_cifar10
from imgclf.config import Config
from imgclf.errors import ImgclfError
from imgclf.training.api import class_weights, train

RECIPE_KEYS = ("model", "batch_size", "flip", "translate", "cutout", "tta", "epochs", "optimizer", "lr", "momentum",
               "weight_decay", "schedule", "warmup", "label_smoothing", "image_size")
METRIC_KEYS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("train-data") / "photos")


def _train(photos, runs_dir, **kw):
    return train(dataset=f"folder:{photos}", runs_dir=str(runs_dir), **{**TRAINED_KW, **kw})


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_folder_contents(trained_run):
    run = trained_run["run_dir"]
    assert run.name == "shared"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    flat = {k: v for group in cfg.values() for k, v in group.items()}
    assert set(flat) == set(Config().flat())
    for key in RECIPE_KEYS:
        assert flat[key] is not None, key  # every recipe value resolved
    assert flat["model"] == "cnn3" and flat["image_size"] == 16 and flat["epochs"] == 1

    split = json.loads((run / "split.json").read_text())
    assert set(split) == {"train", "val", "test"}
    everything = split["train"] + split["val"] + split["test"]
    assert len(everything) == len(set(everything)) == 36 and len(split["test"]) == 6 and len(split["val"]) == 6

    rows = _csv_rows(run / "metrics.csv")
    assert len(rows) == 1 and rows[0]["epoch"] == "0" and float(rows[0]["train_loss"]) > 0
    assert rows[0]["val_acc"] != ""

    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(run / "checkpoints" / name, weights_only=True)
        assert "state_dict" in ckpt and ckpt["epoch"] == 0
    model = torch.load(run / "model.pt", weights_only=True)
    assert model["meta"]["classes"] == ["blue", "green", "red"] and model["meta"]["preprocess"]["size"] == 16

    metrics = json.loads((run / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["train_seconds"] > 0 and metrics["n_test"] == 6 and metrics["epochs"] == 1
    assert metrics == {**trained_run["metrics"], **metrics}

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_done"] == 1 and info["seed"] == 0
    assert info["dataset"]["classes"] == ["blue", "green", "red"] and info["dataset"]["n_train"] == 24
    assert info["environment"]["torch"] == torch.__version__
    for name in ("per_class.csv", "confusion_matrix.png", "test_predictions.npz"):
        assert (run / name).is_file(), name


def test_same_seed_same_result(photos, tmp_path):
    a = _train(photos, tmp_path, name="a", epochs=2)
    b = _train(photos, tmp_path, name="b", epochs=2)
    assert a.metrics["accuracy"] == b.metrics["accuracy"]
    assert a.metrics["macro_f1"] == b.metrics["macro_f1"]
    wa = torch.load(a.run_dir / "model.pt", weights_only=True)["state_dict"]
    wb = torch.load(b.run_dir / "model.pt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    probs_a = np.load(a.run_dir / "test_predictions.npz")["probs"]
    np.testing.assert_array_equal(probs_a, np.load(b.run_dir / "test_predictions.npz")["probs"])
    c = _train(photos, tmp_path, name="c", epochs=2, seed=1)
    wc = torch.load(c.run_dir / "model.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point())


def test_learns_the_colours(photos, tmp_path):
    result = _train(photos, tmp_path, name="learn", model="resnet-fast", width=0.25, epochs=4, batch_size=6,
                    val_fraction=0.0, lr=0.05)
    assert result.metrics["accuracy"] >= 4 / 6  # 6 test images; chance is 1/3 (5/6 to 6/6 seen over seeds)


def test_seed_group(photos, tmp_path):
    result = _train(photos, tmp_path, name="group", seeds=2)
    run = result.run_dir
    group = json.loads((run / "group.json").read_text())
    assert group["members"] == ["seed-0", "seed-1"] and group["status"] == "finished"
    for member, seed in (("seed-0", 0), ("seed-1", 1)):
        assert json.loads((run / member / "run.json").read_text())["seed"] == seed
        assert (run / member / "model.pt").is_file()
    assert json.loads((run / "seed-0" / "split.json").read_text()) == \
        json.loads((run / "seed-1" / "split.json").read_text())  # the split seed stays fixed across seeds
    metrics = json.loads((run / "metrics.json").read_text())
    accs = [json.loads((run / m / "metrics.json").read_text())["accuracy"] for m in group["members"]]
    assert metrics["seeds"] == 2
    assert metrics["accuracy"] == pytest.approx(np.mean(accs))
    assert metrics["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert result.metrics["accuracy"] == metrics["accuracy"]


def test_resume_continues_training(photos, tmp_path):
    first = _train(photos, tmp_path, name="res", epochs=1)
    run = first.run_dir
    with pytest.raises(ImgclfError) as err:
        train(resume=run, runs_dir=str(tmp_path))
    assert "already finished" in str(err.value) and "--epochs" in str(err.value)
    with pytest.raises(ImgclfError, match="cannot change: lr"):
        train(resume=run, epochs=2, lr=0.5)
    second = train(resume="res", runs_dir=str(tmp_path), epochs=2, progress=False, threads=1)
    assert second.run_dir == run
    rows = _csv_rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]
    info = json.loads((run / "run.json").read_text())
    assert info["epochs_done"] == 2 and info["status"] == "finished"
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2


def test_resume_group_with_more_epochs(photos, tmp_path):
    group = _train(photos, tmp_path, name="gres", seeds=2).run_dir
    with pytest.raises(ImgclfError, match="already finished"):
        train(resume=group, threads=1)
    result = train(resume=group, epochs=2, threads=1, progress=False)
    for member in ("seed-0", "seed-1"):
        assert len(_csv_rows(group / member / "metrics.csv")) == 2, member
        assert json.loads((group / member / "run.json").read_text())["epochs_done"] == 2
    assert result.metrics["seeds"] == 2 and [m["accuracy"] for m in result.metrics["members"]] == [
        json.loads((group / m / "metrics.json").read_text())["accuracy"] for m in ("seed-0", "seed-1")]


def test_resume_errors(tmp_path):
    with pytest.raises(ImgclfError, match="run folder not found"):
        train(resume=tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ImgclfError, match="not an imgclf run folder"):
        train(resume=tmp_path / "plain")


def test_class_weight_balanced(tmp_path):
    root = make_folder_dataset(tmp_path / "skewed", per_class=4)
    make_folder_dataset(tmp_path / "skewed", classes=("red",), per_class=16, seed=3)  # red: 16 images, others 4
    result = _train(root, tmp_path / "runs", name="balanced", class_weight="balanced", val_fraction=0.0)
    cfg = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert cfg["optim"]["class_weight"] == "balanced"
    assert 0 <= result.metrics["accuracy"] <= 1
    weights = class_weights(np.array([0, 0, 0, 1]), 3, "balanced")
    assert weights == pytest.approx([4 / 9, 4 / 3, 0.0])  # n / (K * count); absent classes get 0
    assert class_weights(np.array([0, 1]), 2, "none") is None


def test_early_stop_val_loss(photos, tmp_path):
    result = _train(photos, tmp_path, name="es", early_stop="val_loss", patience=1, epochs=3)
    rows = _csv_rows(result.run_dir / "metrics.csv")
    assert 1 <= len(rows) <= 3 and all(r["val_loss"] for r in rows)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["epochs_done"] == len(rows)


def test_existing_run_name_needs_overwrite(photos, tmp_path):
    _train(photos, tmp_path, name="taken")
    with pytest.raises(ImgclfError) as err:
        _train(photos, tmp_path, name="taken")
    assert "already exists" in str(err.value) and "--overwrite" in str(err.value)
    again = _train(photos, tmp_path, name="taken", overwrite=True)
    assert len(_csv_rows(again.run_dir / "metrics.csv")) == 1  # replaced, not appended to


def test_default_run_names_count_up(photos, tmp_path):
    a = _train(photos, tmp_path, name=None, epochs=1)
    b = _train(photos, tmp_path, name=None, epochs=1)
    assert a.run_dir.name == "photos-cnn3" and b.run_dir.name == "photos-cnn3-2"


def test_label_grouping_run(tmp_path):
    write_cifar10(tmp_path / "data" / "cifar-10-batches-py", per_batch=10, n_test=20)
    result = train(dataset="cifar10", data_dir=str(tmp_path / "data"), classes="vehicles-vs-animals", model="cnn3",
                   width=0.25, epochs=1, batch_size=16, runs_dir=str(tmp_path / "runs"), name="grouped",
                   progress=False, threads=1)
    run = result.run_dir
    assert [r["class"] for r in result.metrics["per_class"]] == ["vehicle", "animal"]
    assert np.array(result.metrics["confusion_matrix"]).shape == (2, 2)
    preds = np.load(run / "test_predictions.npz")
    assert preds["probs"].shape == (20, 2)
    vehicles = [0, 1, 8, 9]  # airplane, automobile, ship, truck
    np.testing.assert_array_equal(preds["labels"], [0 if o in vehicles else 1 for o in preds["orig_labels"]])
    assert set(preds["orig_labels"].tolist()) == set(range(10))
    info = json.loads((run / "run.json").read_text())
    assert info["dataset"]["classes"] == ["vehicle", "animal"] and len(info["dataset"]["orig_classes"]) == 10
    assert torch.load(run / "model.pt", weights_only=True)["meta"]["preprocess"]["size"] == 32


@pytest.mark.gpu
def test_train_and_predict_on_gpu(photos, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from imgclf.infer.predict import Predictor

    result = _train(photos, tmp_path, name="gpu", accelerator="gpu", epochs=2)
    assert json.loads((result.run_dir / "run.json").read_text())["environment"]["gpu"]
    assert 0 <= result.metrics["accuracy"] <= 1
    image = next(photos.rglob("*.png"))
    on_gpu = Predictor(result.run_dir, device="cuda").predict(image)[0]
    on_cpu = Predictor(result.run_dir).predict(image)[0]
    assert on_gpu["label"] == on_cpu["label"]
    assert on_gpu["probability"] == pytest.approx(on_cpu["probability"], abs=1e-3)
