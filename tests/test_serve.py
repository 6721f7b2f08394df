"""REST server: every endpoint with good and bad input, API key, metrics, micro-batching, graceful shutdown."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from _deploy import png_bytes, random_image, trained_run

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from imgclf.infer._batching import MicroBatcher  # noqa: E402
from imgclf.infer.predict import Predictor  # noqa: E402
from imgclf.infer.serve import create_app, image_kind  # noqa: E402

KEY = "s3cret-key"
LIMIT = 200_000  # bytes, upload limit of the test apps


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def client(run):
    with TestClient(create_app(run, max_upload_bytes=LIMIT, max_batch=8, max_wait_ms=2)) as c:
        yield c


@pytest.fixture(scope="module")
def reference(run):
    return Predictor(run)


@pytest.fixture(scope="module")
def huge_png():
    """50 megapixels (8000 x 6500) in a few kilobytes: a 1-bit, all-black PNG."""
    buf = io.BytesIO()
    Image.new("1", (8000, 6500)).save(buf, "PNG")
    return buf.getvalue()


def _file(data: bytes, name: str = "x.png", kind: str = "image/png") -> dict:
    return {"file": (name, data, kind)}


def test_predict_multipart_json_and_raw_body_agree_with_the_predictor(client, reference):
    data = png_bytes(random_image(3))
    expected = reference.predict(data, top_k=3)[0]
    answers = [client.post("/v1/predict?top_k=3", files=_file(data)),
               client.post("/v1/predict?top_k=3", json={"image_base64": base64.b64encode(data).decode()}),
               client.post("/v1/predict?top_k=3", content=data, headers={"content-type": "image/png"})]
    for r in answers:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] == expected["label"] and body["model"] == "cnn3" and body["ms"] > 0
        assert len(body["top_k"]) == 3
        np.testing.assert_allclose([t["probability"] for t in body["top_k"]],
                                   [t["probability"] for t in expected["top_k"]], atol=1e-5)
    assert answers[0].json()["input"] == "x.png"


def test_batch_endpoint_reports_bad_items_and_goes_on(client, reference):
    good = [png_bytes(random_image(i)) for i in range(3)]
    files = [("files", (f"{i}.png", d, "image/png")) for i, d in enumerate(good)]
    files.insert(1, ("files", ("junk.png", b"\x00" * 64, "image/png")))
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["input"] for x in results] == ["0.png", "junk.png", "1.png", "2.png"]
    assert results[1]["status"] == 415 and "not a supported image" in results[1]["error"]
    assert [x["label"] for x in results if "label" in x] == [p["label"] for p in reference.predict(good)]
    r = client.post("/v1/predict/batch", json={"images": [{"image_base64": base64.b64encode(good[0]).decode()},
                                                          {"image_base64": "%%%"}]})
    assert r.status_code == 200 and r.json()["results"][1]["status"] == 400
    too_many = [("files", (f"{i}.png", good[0], "image/png")) for i in range(65)]
    assert client.post("/v1/predict/batch", files=too_many).status_code in (400, 413)


@pytest.mark.parametrize("case", ["random_bytes", "truncated", "wrong_content_type", "wrong_part_type", "empty",
                                  "bad_json", "bad_base64", "json_without_image", "url_disabled", "bad_top_k",
                                  "no_file", "text_with_png_magic"])
def test_bad_input_is_a_clear_4xx(client, case):
    png = png_bytes(random_image(1))
    rng = np.random.default_rng(0)
    requests = {
        "random_bytes": (dict(files=_file(rng.bytes(5000))), 415),
        "truncated": (dict(files=_file(png[: len(png) // 2])), 422),
        "wrong_content_type": (dict(content=b"hello", headers={"content-type": "text/plain"}), 415),
        "wrong_part_type": (dict(files=_file(png, kind="text/plain")), 415),
        "empty": (dict(files=_file(b"")), 400),
        "bad_json": (dict(content=b"{nope", headers={"content-type": "application/json"}), 400),
        "bad_base64": (dict(json={"image_base64": "!!!not base64!!!"}), 400),
        "json_without_image": (dict(json={"picture": "x"}), 400),
        "url_disabled": (dict(json={"url": "http://127.0.0.1:9/x.png"}), 403),
        "bad_top_k": (dict(files=_file(png), params={"top_k": 0}), 422),
        "no_file": (dict(data={"note": "no file"}, files={"other": ("", b"", "")}), 400),
        "text_with_png_magic": (dict(files=_file(b"\x89PNG\r\n\x1a\n" + b"x" * 100)), 422),
    }
    kwargs, status = requests[case]
    r = client.post("/v1/predict", **kwargs)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_oversize_bodies_are_refused_by_content_length_and_while_reading(client):
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * LIMIT
    r = client.post("/v1/predict", files=_file(big))
    assert r.status_code == 413 and "too large" in r.json()["error"]

    def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(10):
            yield b"\x00" * (LIMIT // 5)

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = client.post("/v1/predict", content=b"x", headers={"content-type": "image/png", "content-length": "abc"})
    assert 400 <= r.status_code < 500


def test_50_megapixel_image_is_refused_before_decoding(client, huge_png):
    assert len(huge_png) < LIMIT
    start = time.perf_counter()
    r = client.post("/v1/predict", files=_file(huge_png, "huge.png"))
    assert r.status_code == 413 and "too large" in r.json()["error"] and "52,000,000" in r.json()["error"]
    assert time.perf_counter() - start < 5


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
    r = client.get("/v1/predict")
    assert r.status_code == 405 and "error" in r.json()


def test_model_health_docs(client, run):
    info = client.get("/v1/model").json()
    assert info["classes"] == ["class0", "class1", "class2"] and info["model"] == "cnn3"
    assert info["input"]["preprocess"]["size"] == 16 and len(info["input"]["normalize"]["mean"]) == 3
    assert "accuracy" in info["metrics"] and info["limits"]["max_upload_bytes"] == LIMIT
    assert "api_key" not in info["limits"]
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/predict/batch", "/v1/model", "/healthz", "/metrics"} <= set(paths)


def _counter(text: str, endpoint: str, code: int) -> int:
    m = re.search(rf'imgclf_requests_total{{endpoint="{re.escape(endpoint)}",method="POST",code="{code}"}} (\d+)',
                  text)
    return int(m.group(1)) if m else 0


def test_metrics_count_requests_errors_and_latency(client):
    before = client.get("/metrics").text
    png = png_bytes(random_image(2))
    for _ in range(3):
        client.post("/v1/predict", files=_file(png))
    client.post("/v1/predict", files=_file(b"garbage"))
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text
    assert _counter(after, "/v1/predict", 200) - _counter(before, "/v1/predict", 200) == 3
    assert _counter(after, "/v1/predict", 415) - _counter(before, "/v1/predict", 415) == 1
    assert re.search(r'imgclf_request_errors_total{endpoint="/v1/predict"} \d+', after)
    count = int(re.search(r'imgclf_request_duration_seconds_count{endpoint="/v1/predict"} (\d+)', after).group(1))
    inf = int(re.search(r'imgclf_request_duration_seconds_bucket{endpoint="/v1/predict",le="\+Inf"} (\d+)',
                        after).group(1))
    assert count == inf >= 4
    assert "# TYPE imgclf_request_duration_seconds histogram" in after and "imgclf_batch_size_bucket" in after


def test_api_key_missing_wrong_right(run):
    png = png_bytes(random_image(0))
    with TestClient(create_app(run, api_key=KEY)) as c:
        assert c.post("/v1/predict", files=_file(png)).status_code == 401
        r = c.post("/v1/predict", files=_file(png), headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and "API key" in r.json()["error"]
        assert c.get("/v1/model", headers={"X-API-Key": KEY[:-1]}).status_code == 401
        assert c.post("/v1/predict", files=_file(png), headers={"X-API-Key": KEY}).status_code == 200
        assert c.post("/v1/predict", files=_file(png), headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": KEY}).json()["auth"] is True
        assert c.get("/healthz").status_code == 200  # probes need no key


def test_url_inputs_when_allowed(run, tmp_path):
    import functools
    import http.server

    (tmp_path / "a.png").write_bytes(png_bytes(random_image(5)))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with TestClient(create_app(run, allow_urls=True)) as c:
            r = c.post("/v1/predict", json={"url": f"{base}/a.png"})
            assert r.status_code == 200 and r.json()["input"] == f"{base}/a.png"
            assert c.post("/v1/predict", json={"url": f"{base}/missing.png"}).status_code == 422
            assert c.post("/v1/predict", json={"url": "ftp://127.0.0.1/a.png"}).status_code == 422
    finally:
        server.shutdown()


def test_concurrent_requests_are_batched_and_equal_one_by_one(run, reference):
    images = [png_bytes(random_image(i)) for i in range(24)]
    one_by_one = [reference.predict(d)[0] for d in images]
    app = create_app(run, max_batch=8, max_wait_ms=50)
    with TestClient(app) as c, ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda d: c.post("/v1/predict", files=_file(d)).json(), images))
    for got, expected in zip(answers, one_by_one, strict=True):
        assert got["label"] == expected["label"]
        np.testing.assert_allclose([t["probability"] for t in got["top_k"]],
                                   [t["probability"] for t in expected["top_k"]], atol=1e-5)
    sizes = app.state.service.metrics.batch_size
    assert sizes.n < 24 and sizes.total == 24  # fewer forward passes than requests, every image answered


def test_micro_batcher_limits_batches_and_survives_a_failed_forward():
    seen = []

    def forward(batch):
        seen.append(len(batch))
        if (batch == 255).any():
            raise RuntimeError("boom")
        return batch.reshape(len(batch), -1).sum(1, keepdims=True).astype(np.float64)

    async def scenario():
        batcher = MicroBatcher(forward, max_batch=4, max_wait_ms=20)
        images = [np.full((1, 2, 2), i, np.uint8) for i in range(10)]
        results = await asyncio.gather(*[batcher.submit(x) for x in images])
        failed = await asyncio.gather(batcher.submit(np.full((1, 2, 2), 255, np.uint8)), return_exceptions=True)
        after = await batcher.submit(np.full((1, 2, 2), 3, np.uint8))
        await batcher.close()
        return results, failed, after

    results, failed, after = asyncio.run(scenario())
    assert [float(r[0]) for r in results] == [4.0 * i for i in range(10)]
    assert max(seen) <= 4 and sum(seen[:-2]) == 10 and len(seen) < 10
    assert isinstance(failed[0], RuntimeError) and float(after[0]) == 12.0


def test_image_kind_by_magic_bytes():
    assert image_kind(png_bytes(random_image(0))) == "PNG"
    assert image_kind(png_bytes(random_image(0), "JPEG")) == "JPEG"
    assert image_kind(png_bytes(random_image(0), "WEBP")) == "WebP"
    assert image_kind(b"GIF89a...") == "GIF" and image_kind(b"P6\n1 1\n255\n") == "PNM"
    assert image_kind(b"<html>") is None and image_kind(b"") is None


def test_graceful_shutdown_finishes_in_flight_requests(run):
    import http.client

    import uvicorn

    app = create_app(run, max_batch=64, max_wait_ms=600)  # a request waits 0.6 s for company
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    body = png_bytes(random_image(1))
    result = {}

    def request():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        result["status"], result["body"] = response.status, response.read()

    client_thread = threading.Thread(target=request)
    client_thread.start()
    time.sleep(0.25)  # the request is now waiting in the micro-batcher
    server.should_exit = True
    client_thread.join(15)
    thread.join(15)
    assert result.get("status") == 200 and b'"label"' in result["body"]
    assert not thread.is_alive()


def test_cli_serve_input_errors(tmp_path, capsys):
    from imgclf.cli import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--backend", "tensorrt"]) == 2
    assert "unknown backend" in capsys.readouterr().err


def test_create_app_rejects_unknown_options(run):
    from imgclf.errors import ImgclfError

    with pytest.raises(ImgclfError, match="unknown server option"):
        create_app(run, max_batchsize=4)
