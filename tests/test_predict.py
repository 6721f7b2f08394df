"""imgclf.Predictor: every kind of input, folders, errors that do not stop a batch, agreement with evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgclf.data import load_dataset
from imgclf.errors import ImgclfError
from imgclf.infer.predict import Predictor, expand_inputs

CLASSES = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def predictor(trained_run):
    return Predictor(trained_run["run_dir"])


def _check(result, name=None, top_k=3):
    assert "error" not in result, result
    if name is not None:
        assert result["input"] == name
    top = result["top_k"]
    assert len(top) == top_k and [t["label"] for t in top] != [] and all(t["label"] in CLASSES for t in top)
    probs = [t["probability"] for t in top]
    assert probs == sorted(probs, reverse=True)
    assert all(0 <= p <= 1 for p in probs) and sum(probs) <= 1 + 1e-5
    assert result["label"] == top[0]["label"] and result["probability"] == top[0]["probability"]


def test_files_of_different_sizes_and_modes(predictor, tmp_path):
    rgb = np.zeros((30, 45, 3), np.uint8)
    rgb[..., 0] = 220
    files = {
        "big.jpg": Image.fromarray(rgb),
        "gray.png": Image.new("L", (10, 17), 128),
        "alpha.png": Image.new("RGBA", (20, 20), (40, 200, 60, 128)),
        "palette.gif": Image.new("RGB", (16, 16), (40, 60, 220)).convert("P"),
        "cmyk.jpg": Image.new("CMYK", (24, 24), (200, 0, 0, 0)),
        "deep.png": Image.fromarray(np.full((12, 12), 40000, np.uint16)),
    }
    paths = []
    for name, img in files.items():
        img.save(tmp_path / name)
        paths.append(tmp_path / name)
    results = predictor.predict(paths, top_k=3)
    assert len(results) == len(paths)
    for path, result in zip(paths, results, strict=True):
        _check(result, str(path))


def test_top_k_is_clipped_to_the_classes(predictor, trained_run):
    image = next(trained_run["data"].rglob("*.png"))
    assert len(predictor.predict(image, top_k=10)[0]["top_k"]) == 3
    assert len(predictor.predict(image, top_k=1)[0]["top_k"]) == 1
    full = predictor.predict(image, top_k=3)[0]
    assert sum(t["probability"] for t in full["top_k"]) == pytest.approx(1, abs=1e-5)


def test_folder_is_searched_recursively(predictor, tmp_path):
    (tmp_path / "a" / "deeper").mkdir(parents=True)
    Image.new("RGB", (20, 20), (220, 40, 40)).save(tmp_path / "a" / "one.png")
    Image.new("RGB", (20, 20), (40, 60, 220)).save(tmp_path / "a" / "deeper" / "two.jpg")
    (tmp_path / "a" / "notes.txt").write_text("not an image, not listed")
    found = expand_inputs([tmp_path / "a"])
    assert [p.name for p in found] == ["two.jpg", "one.png"]
    assert [p.name for p in expand_inputs([tmp_path / "a"], "*.png")] == ["one.png"]
    results = predictor.predict(found)
    for path, result in zip(found, results, strict=True):
        _check(result, str(path))


def test_arrays_and_pil_images(predictor, tmp_path):
    hwc = np.full((20, 20, 3), (220, 40, 40), np.uint8)
    pil = Image.fromarray(hwc)
    pil.save(tmp_path / "same.png")
    by_array, by_pil, by_file = predictor.predict([hwc, pil, tmp_path / "same.png"])
    assert by_array["input"] == "<input 0>" and by_pil["input"] == "<input 1>"
    for r in (by_array, by_pil, by_file):
        _check(r)
    assert by_array["top_k"] == by_pil["top_k"] == by_file["top_k"]  # one preprocessing path for all inputs
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    assert predictor.predict(chw)[0]["top_k"] == by_array["top_k"]
    raw = predictor.predict_arrays(np.stack([predictor.preprocess(hwc)]))
    assert raw.shape == (1, 3) and raw.sum() == pytest.approx(1, abs=1e-5)


def test_bytes_input(predictor, tmp_path):
    Image.new("RGB", (20, 20), (40, 200, 60)).save(tmp_path / "g.png")
    _check(predictor.predict((tmp_path / "g.png").read_bytes())[0])


def test_corrupt_file_yields_an_error_and_the_rest_go_on(trained_run, tmp_path):
    predictor = Predictor(trained_run["run_dir"], batch_size=2)
    good = []
    for i in range(4):
        Image.new("RGB", (20, 20), (220, 40, 40)).save(tmp_path / f"good{i}.png")
        good.append(tmp_path / f"good{i}.png")
    bad = tmp_path / "bad.jpg"
    bad.write_text("definitely not a jpeg")
    inputs = [good[0], good[1], bad, good[2], tmp_path / "missing.png", good[3]]
    results = list(predictor.iter_predict(inputs))
    assert [r["input"] for r in results] == [str(p) for p in inputs]  # in order
    assert "not an image" in results[2]["error"] and str(bad) in results[2]["error"]
    assert "not found" in results[4]["error"]
    for i in (0, 1, 3, 5):
        _check(results[i])


def test_pixel_limit(trained_run, tmp_path):
    Image.new("RGB", (100, 100), (220, 40, 40)).save(tmp_path / "big.png")
    limited = Predictor(trained_run["run_dir"], max_pixels=5000)
    result = limited.predict(tmp_path / "big.png")[0]
    assert "too large" in result["error"] and "big.png" in result["error"]
    _check(Predictor(trained_run["run_dir"]).predict(tmp_path / "big.png")[0])


def test_evaluate_and_predict_agree(trained_run, predictor, tmp_path):
    run = trained_run["run_dir"]
    saved = np.load(run / "test_predictions.npz")
    ds = load_dataset(f"folder:{trained_run['data']}", image_size=16, progress=False)
    pool = ds.pools["all"]
    for k, test_id in enumerate(saved["ids"][:3]):
        stored = pool.images[pool.ids.tolist().index(test_id)]  # the (3, 16, 16) array the run was tested on
        Image.fromarray(stored.transpose(1, 2, 0)).save(tmp_path / f"test{k}.png")
        from_png = predictor.predict_arrays(predictor.preprocess(tmp_path / f"test{k}.png")[None])[0]
        from_source = predictor.predict_arrays(predictor.preprocess(trained_run["data"] / test_id)[None])[0]
        np.testing.assert_allclose(from_png, saved["probs"][k], atol=1e-4)
        np.testing.assert_allclose(from_source, saved["probs"][k], atol=1e-4)  # the original file, decoded anew


def test_predictor_sources(trained_run, tmp_path):
    run = trained_run["run_dir"]
    image = next(trained_run["data"].rglob("*.png"))
    expected = Predictor(run).predict(image)[0]["top_k"]
    assert Predictor(run / "model.pt").predict(image)[0]["top_k"] == expected
    assert Predictor("shared", runs_dir=trained_run["runs_dir"]).predict(image)[0]["top_k"] == expected
    assert Predictor(run).tta_level == 2  # folder recipe: TTA on, as evaluation
    assert Predictor(run, tta=False).tta_level == 0 and Predictor(run, tta=True).tta_level == 1
    assert "classes=3" in repr(Predictor(run))
    with pytest.raises(ImgclfError, match="run folder.* not found"):
        Predictor(tmp_path / "no-such-run")
