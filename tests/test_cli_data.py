"""``imgclf data ...`` end to end on tiny synthetic folders (and a local HTTP server for collect)."""

from __future__ import annotations

import functools
import io
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from imgclf.cli import main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLF_CACHE", str(tmp_path / "cache"))


def _jpeg(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture()
def photos(tmp_path):
    root = tmp_path / "photos"
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True)
        for k in range(6):
            (root / c / f"{k}.jpg").write_bytes(_jpeg(k + 10 * (c == "dogs")))
    (root / "cats" / "0-again.jpg").write_bytes((root / "cats" / "0.jpg").read_bytes())
    (root / "dogs" / "empty.jpg").write_bytes(b"")
    return root


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_clean_json_apply_and_restore(photos, tmp_path, capsys):
    assert main(["data", "clean", str(photos), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["file"], r["kind"]) for r in records} == {("dogs/empty.jpg", "empty"),
                                                          ("cats/0-again.jpg", "exact_duplicate")}
    assert next(r for r in records if r["kind"] == "exact_duplicate")["duplicate_of"] == "cats/0.jpg"
    before = _tree(photos)
    quarantine = tmp_path / "rejected"
    assert main(["data", "clean", str(photos), "--apply", "--quarantine", str(quarantine),
                 "--report", str(tmp_path / "clean.html")]) == 0
    out = capsys.readouterr().out
    assert "moved 2 files" in out and "exact_duplicate" in out and (tmp_path / "clean.html").is_file()
    assert "cats/0-again.jpg" not in _tree(photos)
    assert main(["data", "restore", str(quarantine)]) == 0
    assert "restored 2 files" in capsys.readouterr().out
    assert _tree(photos) == before


def test_clean_default_quarantine_and_errors(photos, tmp_path, capsys):
    assert main(["data", "clean", str(photos), "--apply"]) == 0
    assert (tmp_path / "photos-rejected" / "manifest.jsonl").is_file()
    assert main(["data", "clean", str(tmp_path / "nope")]) == 2
    assert "error: folder not found" in capsys.readouterr().err
    assert main(["data", "restore", str(tmp_path / "photos")]) == 2


def test_split_and_explore(photos, tmp_path, capsys):
    assert main(["data", "split", str(photos), "--out", str(tmp_path / "split"), "--test", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "1 groups of copies kept together" in out and "dogs/empty.jpg" in out
    assert (tmp_path / "split" / "train").is_dir() and (tmp_path / "split" / "test").is_dir()
    assert main(["data", "explore", str(tmp_path / "split"), "--out", str(tmp_path / "eda"), "--image-size",
                 "16", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "imbalance" in out and "report:" in out
    summary = json.loads((tmp_path / "eda" / "summary.json").read_text())
    assert set(summary["counts"]) == {"train", "test"} and summary["quality"]["counts"]["leak"] == 0
    assert (tmp_path / "eda" / "report.html").stat().st_size > 10_000
    assert main(["data", "explore", "cifar100x"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_collect_from_a_local_server(tmp_path, capsys):
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    for k in range(3):
        (site / "img" / f"{k}.jpg").write_bytes(_jpeg(k))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/img"
        (tmp_path / "urls.csv").write_text("url,label\n" + "".join(f"{base}/{k}.jpg,c{k % 2}\n" for k in range(3))
                                           + f"{base}/missing.jpg,c0\n")
        args = ["data", "collect", str(tmp_path / "urls.csv"), "--out", str(tmp_path / "out"), "--label-from",
                "column", "--rate", "0", "--retries", "0"]
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "3 new images" in out and "http_error" in out
        assert sorted(p.parent.name for p in (tmp_path / "out").rglob("*.jpg")) == ["c0", "c0", "c1"]
        assert main([*args, "--json"]) == 0
        assert capsys.readouterr().out == ""  # resumed: nothing left to do
    finally:
        httpd.shutdown()
        httpd.server_close()
