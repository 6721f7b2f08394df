"""Predictor over every backend and input kind: files, folders, URLs, bytes, numpy, PIL; JSON lines and CSV output."""

from __future__ import annotations

import csv
import functools
import http.server
import io
import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from _deploy import data_folder, png_bytes, random_image, trained_run

pytest.importorskip("onnxruntime")

from imgclf.errors import ImgclfError  # noqa: E402
from imgclf.infer.backends import OrtBackend, combine_views, load_backend, tta_views  # noqa: E402
from imgclf.infer.export import export  # noqa: E402
from imgclf.infer.predict import Predictor, expand_inputs, fetch_url  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    return {"onnx": export(run, "onnx", out=out / "m.onnx").path,
            "torchscript": export(run, "torchscript", out=out / "m.ts").path}


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    """A local http.server on 127.0.0.1 serving a folder with one PNG and one big file."""
    root = tmp_path_factory.mktemp("www")
    (root / "cat.png").write_bytes(png_bytes(random_image(4)))
    (root / "big.png").write_bytes(png_bytes(random_image(5, size=300)))
    (root / "note.txt").write_text("not an image")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def _probs(results):
    return np.array([[t["probability"] for t in sorted(r["top_k"], key=lambda t: t["label"])] for r in results])


def test_every_backend_predicts_the_same(run, exported, tmp_path_factory):
    files = sorted(data_folder(tmp_path_factory).rglob("*.png"))[:10]
    reference = Predictor(run).predict(files)
    for source, backend in ((exported["onnx"], None), (exported["torchscript"], None), (run, "onnx")):
        predictor = Predictor(source, backend=backend)
        results = predictor.predict(files)
        assert [r["label"] for r in results] == [r["label"] for r in reference], (source, backend)
        np.testing.assert_allclose(_probs(results), _probs(reference), atol=1e-4)
    assert Predictor(run, backend="onnx").backend.name == "onnx"
    assert Predictor(run).tta_level == 2  # the run was evaluated with TTA; exported files keep that default
    assert Predictor(exported["onnx"]).tta_level == 2


def test_numpy_tta_equals_torch_tta(run, exported):
    from imgclf.models import tta_logits
    from imgclf.models.io import load_model

    model, _ = load_model(run / "model.pt")
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 16, 16), dtype=np.uint8)
    ort = OrtBackend(exported["onnx"])
    for level in (0, 1, 2):
        with torch.inference_mode():
            expected = tta_logits(model, torch.from_numpy(x), level).numpy()
        views = tta_views(x, level)
        got = combine_views([ort.logits(np.ascontiguousarray(v)) for v in views], level)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_input_kinds_give_the_same_answer(exported, tmp_path):
    image = random_image(7)
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(image))
    p = Predictor(exported["onnx"])
    results = p.predict([path, str(path), path.read_bytes(), image, Image.fromarray(image),
                         image.astype(np.float32) / 255.0])
    assert [r["input"] for r in results[:2]] == [str(path), str(path)]
    assert results[2]["input"] == "<input 2>"
    probs = _probs(results)
    np.testing.assert_allclose(probs, np.repeat(probs[:1], len(results), axis=0), atol=2e-3)  # float input rounds
    assert p.predict(path)[0]["label"] == results[0]["label"]  # a single input, not wrapped in a list


def test_folder_recursion_glob_and_bad_files_keep_order(exported, tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/1.png", "a/deep/2.png", "a/deep/3.jpg"):
        Image.fromarray(random_image(1)).save(tmp_path / name)
    (tmp_path / "a" / "notes.txt").write_text("skip me")
    assert [p.name for p in expand_inputs([tmp_path / "a"])] == ["1.png", "2.png", "3.jpg"]
    assert [p.name for p in expand_inputs([tmp_path / "a"], "*.png")] == ["1.png", "2.png"]
    whole = png_bytes(random_image(2))
    (tmp_path / "broken.png").write_bytes(whole[: len(whole) // 2])
    inputs = [tmp_path / "a" / "1.png", tmp_path / "broken.png", tmp_path / "missing.png", tmp_path / "a/deep/2.png"]
    results = Predictor(exported["onnx"], batch_size=2).predict(inputs)
    assert [r["input"] for r in results] == [str(i) for i in inputs]
    assert "label" in results[0] and "label" in results[3]
    assert "truncated" in results[1]["error"] and "file not found" in results[2]["error"]


def test_url_inputs(exported, http_root):
    base, _ = http_root
    p = Predictor(exported["onnx"], max_url_bytes=20_000)
    results = p.predict([f"{base}/cat.png", f"{base}/missing.png", f"{base}/big.png", f"{base}/note.txt"])
    local = Predictor(exported["onnx"]).predict(png_bytes(random_image(4)))[0]
    assert results[0]["input"] == f"{base}/cat.png" and results[0]["top_k"] == local["top_k"]
    assert "HTTP 404" in results[1]["error"]
    assert "too large" in results[2]["error"]
    assert "not an image" in results[3]["error"]
    assert expand_inputs([f"{base}/cat.png"]) == [f"{base}/cat.png"]  # URLs are not paths


def test_fetch_url_refuses_other_schemes_and_unreachable_hosts(tmp_path):
    from imgclf.data.images import ImageError

    with pytest.raises(ImageError, match="only http"):
        fetch_url(f"file://{tmp_path}")
    with pytest.raises(ImageError, match="cannot fetch"):
        fetch_url("http://127.0.0.1:9/x.png", timeout=2)  # discard port: nothing listens


def test_backend_errors(run, exported, tmp_path):
    with pytest.raises(ImgclfError, match="unknown backend 'tensorrt'"):
        load_backend(run, "tensorrt")
    with pytest.raises(ImgclfError, match="ONNX file"):
        load_backend(exported["onnx"], "torch")
    with pytest.raises(ImgclfError, match="not found"):
        Predictor(tmp_path / "nothing.onnx")


def test_cli_json_lines_and_csv(exported, tmp_path, capsys):
    from imgclf.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(random_image(i)).save(folder / f"{i}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG but not really")
    assert main(["predict", str(exported["onnx"]), str(folder), "--json", "--batch-size", "2"]) == 1  # a bad file
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 4 and sum("error" in r for r in lines) == 1
    assert "error:" in captured.err and "bad.png" in captured.err
    assert main(["predict", str(exported["onnx"]), str(folder), "--csv", "--top-k", "2", "--glob", "[0-9].png"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3 and set(rows[0]) == {"input", "label", "probability", "label_2", "probability_2", "error"}
    assert float(rows[0]["probability"]) >= float(rows[0]["probability_2"])
    assert main(["predict", str(exported["onnx"]), str(folder), "--csv", "--json"]) == 2
