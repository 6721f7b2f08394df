"""explore: the pure statistics, the in-memory quality check, and reports on a folder and on CIFAR-10."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.dataset import Dataset, Pool
from imgclf.data.explore import (
    array_quality,
    brightness_contrast,
    channel_stats,
    explore,
    imbalance_ratio,
    per_class_stats,
    pick_samples,
    resolve_spec,
    size_summary,
)
from imgclf.data.report import write_explore_report

CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar-10-mini"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLF_CACHE", str(tmp_path / "cache"))


def _synth(seed: int, size: tuple[int, int] = (48, 36)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_imbalance_and_channel_statistics_match_numpy():
    assert imbalance_ratio(np.array([30, 10, 20])) == 3.0
    assert imbalance_ratio(np.array([5, 0])) == float("inf")
    images = np.random.default_rng(0).integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    stats = channel_stats([images[:20], images[20:]], chunk=7)
    as_float = images.astype(np.float64) / 255
    assert np.allclose(stats["mean"], as_float.mean(axis=(0, 2, 3)), atol=1e-4)
    assert np.allclose(stats["std"], as_float.std(axis=(0, 2, 3)), atol=1e-4)
    assert np.array_equal(stats["hist"][1], np.bincount(images[:, 1].ravel(), minlength=256))
    assert channel_stats(images[:, :1])["names"] == ["L"]


def test_brightness_contrast_and_per_class_rows():
    dark = np.full((4, 3, 8, 8), 20, np.uint8)
    bright = np.random.default_rng(0).integers(150, 256, (6, 3, 8, 8), dtype=np.uint8)
    b, c = brightness_contrast(np.concatenate([dark, bright]), chunk=3)
    luma = (np.concatenate([dark, bright]).astype(np.float64) / 255 * np.array([.299, .587, .114])[:, None, None]
            ).sum(1).reshape(10, -1)
    assert np.allclose(b, luma.mean(1), atol=1e-5) and np.allclose(c, luma.std(1), atol=1e-5)
    rows = per_class_stats(b, c, np.array([0] * 4 + [1] * 6), ["dark", "bright"])
    assert rows[0]["images"] == 4 and rows[0]["contrast"]["mean"] == 0.0
    assert rows[1]["brightness"]["mean"] > 0.6 > rows[0]["brightness"]["p95"]


def test_sizes_and_samples():
    summary = size_summary(np.array([[640, 480]] * 3 + [[100, 200], [0, 0]]))
    assert summary["most_common"] == {"640x480": 3, "100x200": 1} and summary["distinct"] == 2
    assert summary["aspect"]["p50"] == round(640 / 480, 4)
    picks = pick_samples(np.array([0, 0, 0, 1, 2, 2]), 4, 2, seed=0)
    assert [len(p) for p in picks] == [2, 1, 2, 0] and set(picks[2]) == {4, 5}


def test_array_quality_finds_copies_and_leaks():
    rng = np.random.default_rng(0)
    train = np.stack([np.asarray(_synth(k, (32, 32))).transpose(2, 0, 1) for k in range(30)])
    test = np.stack([np.asarray(_synth(100 + k, (32, 32))).transpose(2, 0, 1) for k in range(10)])
    test[3] = train[5]  # an exact leak
    train[7] = train[8]  # an exact copy with another label
    labels = rng.integers(0, 3, 30)
    labels[7], labels[8] = 0, 1
    ds = Dataset("toy", ["a", "b", "c"], {
        "train": Pool(train, labels, np.array([f"train/{i}" for i in range(30)])),
        "test": Pool(test, rng.integers(0, 3, 10), np.array([f"test/{i}" for i in range(10)]))})
    for limit in (1000, 0):  # with and without the near-duplicate search
        q = array_quality(ds, near_limit=limit)
        assert q["counts"]["leak"] == 1 and q["counts"]["exact_duplicate"] == 1
        assert q["counts"]["label_conflict"] == 2 + (ds.pools["test"].labels[3] != labels[5]) * 2
        assert q["counts"]["near_duplicate"] == 0
    assert "exact duplicates only" in array_quality(ds, near_limit=0)["note"]


def test_explore_folder_writes_a_self_contained_report(tmp_path):
    root = tmp_path / "photos"
    for c, n in (("cats", 12), ("dogs", 4)):
        (root / c).mkdir(parents=True)
        for k in range(n):
            (root / c / f"{k}.jpg").write_bytes(_jpeg(_synth(k + 50 * (c == "dogs"), (48 + k, 36))))
    (root / "dogs" / "copy.jpg").write_bytes((root / "cats" / "0.jpg").read_bytes())
    (root / "dogs" / "broken.jpg").write_bytes(b"")
    assert resolve_spec(str(root)) == f"folder:{root}"
    e = explore(str(root), image_size=16, samples=3)
    assert e.classes == ["cats", "dogs"] and e.counts == {"all": [12, 5]}
    assert e.imbalance == 12 / 5 and e.image_shape == (3, 16, 16)
    assert e.sizes["height"]["p50"] == 36.0 and e.sizes["distinct"] == 12 and len(e.skipped) == 1
    assert e.quality["counts"]["empty"] == 1 and e.quality["counts"]["label_conflict"] == 2
    assert [len(v) for v in e.samples.values()] == [3, 3]
    path = write_explore_report(e, tmp_path / "eda" / "report.html")
    html = path.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 5  # counts, samples, sizes, hist, brightness
    assert "http://" not in html and "https://" not in html and "label_conflict" in html
    json.dumps(e.to_dict())  # the summary is plain JSON


@pytest.mark.realdata
def test_explore_cifar10_mini(tmp_path):
    if not CIFAR.is_dir():
        pytest.skip(f"CIFAR-10 subset not found at {CIFAR} (see ../shared/data/README.md)")
    e = explore("cifar10", data_dir=str(CIFAR), samples=2)
    assert sum(e.counts["train"]) == 5085 and sum(e.counts["test"]) == 1017
    assert 1.0 < e.imbalance < 1.3 and e.sizes is None
    assert np.allclose(e.channels["mean"], [0.49, 0.48, 0.45], atol=0.02)  # the well-known CIFAR-10 means
    assert e.quality["counts"]["corrupt"] == 0 and "near" in e.quality["note"]
    assert write_explore_report(e, tmp_path / "r.html").stat().st_size > 50_000
