"""Export: ONNX round trip and dynamic batch, the contract in the file, int8 with its accuracy report, TorchScript."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from _deploy import data_folder, trained_run

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from imgclf.errors import ImgclfError  # noqa: E402
from imgclf.infer.backends import OrtBackend, TorchBackend, load_backend  # noqa: E402
from imgclf.infer.export import export  # noqa: E402
from imgclf.infer.predict import Predictor  # noqa: E402
from imgclf.models.io import load_model  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def onnx_file(run, tmp_path_factory):
    return export(run, "onnx", out=tmp_path_factory.mktemp("onnx") / "model.onnx").path


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnx_matches_pytorch_for_any_batch_size(run, onnx_file, batch):
    model, meta = load_model(run / "model.pt")
    x = _images(batch, seed=batch)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    got = OrtBackend(onnx_file).logits(x)
    assert got.shape == (batch, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_onnx_metadata_is_the_whole_contract(run, onnx_file, tmp_path, tmp_path_factory):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    contract = json.loads(props["imgclf"])
    _, meta = load_model(run / "model.pt")
    assert contract["classes"] == meta["classes"] == ["class0", "class1", "class2"]
    assert contract["preprocess"] == meta["preprocess"]
    assert contract["model"] == "cnn3" and contract["imgclf_version"]
    assert contract["input"]["dtype"] == "uint8" and contract["input"]["shape"] == ["batch", 3, 16, 16]
    assert contract["normalize"]["mean"] == meta["arch"]["mean"]
    assert "accuracy" in contract["metrics"]
    # the file alone, away from its run folder, predicts what the run predicts
    alone = tmp_path / "elsewhere.onnx"
    shutil.copy(onnx_file, alone)
    files = sorted(data_folder(tmp_path_factory).rglob("*.png"))[:9]
    from_file = Predictor(alone).predict(files)
    from_run = Predictor(run).predict(files)
    assert [r["label"] for r in from_file] == [r["label"] for r in from_run]
    for a, b in zip(from_file, from_run, strict=True):
        assert abs(a["probability"] - b["probability"]) < 1e-4


def test_onnx_without_imgclf_metadata_is_refused(onnx_file, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ImgclfError, match="no imgclf metadata"):
        Predictor(bare)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ImgclfError, match="not a readable ONNX model"):
        Predictor(tmp_path / "junk.onnx")


def test_int8_static_quantization_reports_test_accuracy(run, tmp_path):
    result = export(run, "onnx", quantize="int8", out=tmp_path / "q.onnx", calibration_images=20)
    report = result.report
    n_test = len(json.loads((run / "split.json").read_text())["test"])
    assert report["images"] == n_test
    assert 0 <= report["reference_accuracy"] <= 1 and 0 <= report["exported_accuracy"] <= 1
    assert report["accuracy_change_points"] == pytest.approx(
        100 * (report["exported_accuracy"] - report["reference_accuracy"]), abs=1e-3)
    assert report["top1_agreement"] >= 0.5
    backend = load_backend(result.path)
    assert backend.meta["quantize"] == "int8" and backend.meta["calibration"]["images"] == 20
    assert backend.meta["check"]["accuracy_change_points"] == report["accuracy_change_points"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static: activations are quantized too
    fp32 = export(run, "onnx", out=tmp_path / "f.onnx").path
    assert result.path.stat().st_size < 0.6 * fp32.stat().st_size


def test_torchscript_round_trip(run, tmp_path, tmp_path_factory):
    result = export(run, "torchscript", out=tmp_path / "model.ts", check=True)
    assert result.report["passed"] and result.report["max_abs_diff"] < 1e-5
    backend = load_backend(result.path)
    assert isinstance(backend, TorchBackend) and backend.meta["classes"] == ["class0", "class1", "class2"]
    files = sorted(data_folder(tmp_path_factory).rglob("*.png"))[:6]
    assert Predictor(result.path).predict(files) == Predictor(run).predict(files)


def test_check_passes_and_fails_against_its_tolerance(run, tmp_path):
    ok = export(run, "onnx", out=tmp_path / "a.onnx", check=True)
    assert ok.report["passed"] and ok.report["max_abs_diff"] <= 1e-4 and ok.report["top1_agreement"] == 1.0
    with pytest.raises(ImgclfError, match="check failed"):
        export(run, "onnx", out=tmp_path / "b.onnx", check=True, tolerance=-1.0)


def test_export_input_errors(run, tmp_path, tmp_path_factory):
    with pytest.raises(ImgclfError, match="unknown export format 'tflite'; accepted: onnx, torchscript"):
        export(run, "tflite")
    with pytest.raises(ImgclfError, match="ONNX format only"):
        export(run, "torchscript", quantize="int8")
    with pytest.raises(ImgclfError, match="not found"):
        export(tmp_path / "missing")
    bare = tmp_path / "bare" / "model.pt"
    bare.parent.mkdir()
    shutil.copy(run / "model.pt", bare)
    with pytest.raises(ImgclfError, match="calibration"):
        export(bare, quantize="int8")
    result = export(bare, quantize="int8", calibration_data=data_folder(tmp_path_factory), calibration_images=12)
    assert result.path == bare.parent / "model.int8.onnx" and result.report["top1_agreement"] >= 0.5


def test_cli_export_and_predict_exported_file(run, tmp_path, capsys, tmp_path_factory):
    from imgclf.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", str(run), "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "passed" in printed
    image = sorted(data_folder(tmp_path_factory).rglob("*.png"))[0]
    assert main(["predict", str(out), str(image), "--json", "--top-k", "2"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["input"] == str(image) and len(line["top_k"]) == 2
    assert main(["export", str(run), "--format", "tflite"]) == 2
