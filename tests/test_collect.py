"""The collector against a local HTTP server: good images, redirects, 404, slow answers, fakes, huge bodies."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from imgclf.data.collect import (
    CollectOptions,
    FetchError,
    HostRateLimiter,
    collect,
    image_urls,
    read_targets,
    with_retries,
)
from imgclf.errors import ImgclfError


def _image_bytes(fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


JPEG, PNG, JPEG2 = _image_bytes("JPEG", 0), _image_bytes("PNG", 1), _image_bytes("JPEG", 2)


class _Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    hits: list = []
    agents: list = []
    flaky_left = [0]

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str, extra: dict | None = None, length: bool = True):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - the http.server API
        path = self.path.split("?")[0]
        self.hits.append(self.path)
        self.agents.append(self.headers.get("User-Agent"))
        if path == "/a.jpg":
            self._send(200, JPEG, "image/jpeg")
        elif path == "/b.png":
            self._send(200, PNG, "image/png")
        elif path == "/same-as-a.jpg":
            self._send(200, JPEG, "application/octet-stream")
        elif path == "/cats/c.jpg":
            self._send(200, JPEG2, "image/jpeg")
        elif path == "/moved":
            self._send(302, b"", "text/plain", {"Location": "/b.png"})
        elif path == "/slow.jpg":
            time.sleep(1.0)
            self._send(200, JPEG, "image/jpeg")
        elif path == "/fake.jpg":
            self._send(200, b"<!DOCTYPE html><html>no image here</html>", "image/jpeg")
        elif path == "/page.html":
            self._send(200, b"<html></html>", "text/html")
        elif path == "/huge.jpg":  # no Content-Length: the limit must hold while streaming
            self._send(200, b"\xff\xd8\xff" + b"\0" * 300_000, "image/jpeg", length=False)
        elif path == "/flaky.jpg":
            if self.flaky_left[0] > 0:
                self.flaky_left[0] -= 1
                self._send(503, b"busy", "text/plain", {"Retry-After": "0"})
            else:
                self._send(200, JPEG2, "image/jpeg")
        elif path == "/listing.json":
            self._send(200, json.dumps(self.routes["listing"](self.path)).encode(), "application/json")
        else:
            self._send(404, b"not found", "text/plain")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # the client hanging up on /huge.jpg is expected
        pass


@pytest.fixture()
def server():
    _Handler.hits, _Handler.agents, _Handler.flaky_left = [], [], [1]
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


FAST = CollectOptions(workers=4, per_host_rate=0, retries=1, backoff=0.01, connect_timeout=2, read_timeout=0.3,
                      total_timeout=5, max_bytes=100_000)


def _by_url(result) -> dict[str, dict]:
    return {r["url"].rsplit("/", 1)[-1]: r for r in result.records}


def test_collect_statuses_files_and_manifest(server, tmp_path):
    names = ["a.jpg", "b.png", "same-as-a.jpg", "moved", "missing.jpg", "slow.jpg", "fake.jpg", "page.html",
             "huge.jpg", "flaky.jpg"]
    (tmp_path / "urls.txt").write_text("# test list\n" + "\n".join(f"{server}/{n}" for n in names) + "\n\n")
    result = collect(str(tmp_path / "urls.txt"), tmp_path / "out", options=FAST)
    rec = _by_url(result)
    pairs = (("a.jpg", "same-as-a.jpg"), ("b.png", "moved"))
    assert {n: rec[n]["status"] for n in names if not any(n in pair for pair in pairs)} == {
        "missing.jpg": "http_error", "slow.jpg": "timeout", "fake.jpg": "not_image", "page.html": "not_image",
        "huge.jpg": "too_large", "flaky.jpg": "ok"}
    # the same body twice (/moved redirects to /b.png): stored once, "ok" for whichever finished first
    for first, second in pairs:
        assert sorted([rec[first]["status"], rec[second]["status"]]) == ["duplicate", "ok"]
    sha = hashlib.sha256(JPEG).hexdigest()
    assert rec["a.jpg"]["file"] == f"{sha}.jpg" and (tmp_path / "out" / f"{sha}.jpg").read_bytes() == JPEG
    assert rec["same-as-a.jpg"]["file"] == rec["a.jpg"]["file"]
    assert rec["moved"]["file"].endswith(".png") and rec["moved"]["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert "404" in rec["missing.jpg"]["error"]
    stored = sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix != ".jsonl")
    assert len(stored) == 3  # a.jpg, b.png (also via redirect), flaky.jpg; nothing half-written
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == len(names) and all(json.loads(x)["url"].startswith(server) for x in lines)
    assert all(a.startswith("imgclf/") for a in _Handler.agents)


def test_collect_resumes_without_downloading_again(server, tmp_path):
    urls = [f"{server}/a.jpg", f"{server}/b.png", f"{server}/missing.jpg"]
    (tmp_path / "urls.txt").write_text("\n".join(urls))
    first = collect(str(tmp_path / "urls.txt"), tmp_path / "out", options=FAST)
    assert first.counts() == {"ok": 2, "http_error": 1}
    hits = len(_Handler.hits)
    second = collect(str(tmp_path / "urls.txt"), tmp_path / "out", options=FAST)
    assert second.records == [] and second.skipped == 3 and len(_Handler.hits) == hits
    # a deleted file is fetched again; a failure is retried only when asked
    next((tmp_path / "out").glob("*.png")).unlink()
    third = collect(str(tmp_path / "urls.txt"), tmp_path / "out", options=FAST)
    assert [r["url"] for r in third.records] == [f"{server}/b.png"]
    fourth = collect(str(tmp_path / "urls.txt"), tmp_path / "out",
                     options=CollectOptions(**{**FAST.__dict__, "retry_failed": True}))
    assert [r["url"] for r in fourth.records] == [f"{server}/missing.jpg"]


def test_collect_labels_from_csv_column_and_url_folder(server, tmp_path):
    (tmp_path / "urls.csv").write_text(f"url,label\n{server}/a.jpg,tanks\n{server}/cats/c.jpg,cars\n")
    result = collect(str(tmp_path / "urls.csv"), tmp_path / "out", label_from="column", options=FAST)
    assert sorted(r["file"].split("/")[0] for r in result.records) == ["cars", "tanks"]
    targets = read_targets(str(tmp_path / "urls.csv"), label_from="folder")
    assert [t.label for t in targets] == ["", "cats"]
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "tanks.txt").write_text(f"{server}/a.jpg\n")
    (lists / "cars.txt").write_text(f"{server}/b.png\n")
    assert {t.label for t in read_targets(str(lists))} == {"tanks", "cars"}
    (tmp_path / "urls.txt").write_text(f"{server}/a.jpg tanks\n# a comment\n{server}/b.png  main tanks\n")
    assert [t.label for t in read_targets(str(tmp_path / "urls.txt"), label_from="column")] == ["tanks",
                                                                                              "main tanks"]
    (tmp_path / "bare.txt").write_text(f"{server}/a.jpg\n")
    with pytest.raises(ImgclfError, match="needs labels"):
        read_targets(str(tmp_path / "bare.txt"), label_from="column")
    with pytest.raises(ImgclfError, match="no column 'klass'"):
        read_targets(str(tmp_path / "urls.csv"), label_from="column", label_column="klass")
    with pytest.raises(ImgclfError, match="accepted: column, folder, list"):
        read_targets(str(tmp_path / "urls.csv"), label_from="colum")


def test_collect_listing_follows_pages_and_skips_thumbnails(server, tmp_path):
    def listing(path: str) -> dict:
        if "after=t3_2" in path:
            return {"data": {"after": None, "children": [{"data": {"url": f"{server}/flaky.jpg"}}]}}
        post = {"url": f"{server}/post/1", "thumbnail": f"{server}/thumb.jpg",
                "preview": {"images": [{"source": {"url": f"{server}/b.png?x=1&amp;y=2"},
                                        "resolutions": [{"url": f"{server}/small.jpg"}]}]}}
        return {"data": {"after": "t3_2", "children": [{"data": post}, {"data": {"url": f"{server}/a.jpg"}}]}}

    _Handler.routes["listing"] = listing
    result = collect(f"listing:{server}/listing.json?limit=2", tmp_path / "out", options=FAST)
    assert sorted(r["url"].rsplit("/", 1)[-1] for r in result.records) == ["a.jpg", "b.png?x=1&y=2", "flaky.jpg"]
    assert result.counts() == {"ok": 3}
    limited = read_targets(f"listing:{server}/listing.json", limit=1, options=FAST)
    assert len(limited) == 1


def test_image_urls_generic_walk():
    doc = {"items": [{"src": "https://x.org/1.webp", "thumb": "https://x.org/1_t.webp"},
                     {"caption": "hi", "media": ["https://x.org/2.GIF", "https://x.org/page"]}]}
    assert list(image_urls(doc)) == ["https://x.org/1.webp", "https://x.org/2.GIF"]


def test_rate_limiter_spaces_requests_per_host():
    clock = [0.0]
    waits = []
    limiter = HostRateLimiter(2.0, clock=lambda: clock[0], sleep=waits.append)
    for _ in range(3):
        limiter.wait("a.example")
    limiter.wait("b.example")
    assert waits == [0.5, 1.0]  # the 2nd and 3rd request to one host wait; another host does not


def test_retries_back_off_exponentially():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        raise FetchError("timeout", "slow", retryable=True)

    opts = CollectOptions(retries=3, backoff=1.0)
    with pytest.raises(FetchError):
        with_retries(flaky, opts, sleep=sleeps.append)
    assert len(calls) == 4 and [round(s) for s in sleeps] == [1, 2, 4]
    assert all(1.0 <= s / b <= 1.1 for s, b in zip(sleeps, [1, 2, 4], strict=True))
    calls.clear()

    def gone():
        calls.append(1)
        raise FetchError("http_error", "HTTP 404 Not Found")

    with pytest.raises(FetchError):
        with_retries(gone, opts, sleep=sleeps.append)
    assert len(calls) == 1  # a 404 is final
