"""The HTML report: built from a tiny trained run, self-contained, within its size limit, rendered by Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers_report import make_folder_dataset, train_tiny
from imgclf.cli import main
from imgclf.errors import ImgclfError
from imgclf.evaluation import report

SECTIONS = ("summary", "curves", "metrics", "confusion", "roc", "calibration", "confused", "wrong", "unsure")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data = make_folder_dataset(root / "photos")
    return train_tiny(data, root / "runs", "grouped", grouped=True).run_dir


@pytest.fixture(scope="module")
def html_file(grouped_run, tmp_path_factory) -> Path:
    return report.write_report(grouped_run, tmp_path_factory.mktemp("out") / "report.html", examples=12)


def _external_refs(page: str) -> list[str]:
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""", page, flags=re.I)
    return refs + re.findall(r"url\(\s*['\"]?\s*((?:https?:)?//[^)]*)", page, flags=re.I) + \
        re.findall(r"@import[^;]*", page)


def test_report_has_every_section_and_no_external_resource(html_file):
    page = html_file.read_text(encoding="utf-8")
    for anchor in (*SECTIONS, "grouped"):
        assert f'<section id="{anchor}">' in page, anchor
    assert _external_refs(page) == []
    assert "<script" not in page and "<link" not in page
    images = re.findall(r"<img [^>]*>", page)
    assert all('src="data:image/png;base64,' in img for img in images)
    assert len(images) >= 4 + 12  # curves, confusion, ROC, reliability + a gallery of thumbnails
    assert html_file.stat().st_size < 15e6


def test_report_traces_grouped_mistakes_to_original_classes_and_fits_a_temperature(grouped_run):
    data = report.collect(grouped_run, examples=5)
    assert data["classes"] == ["vehicle", "animal"]
    rows = data["by_original"]
    assert sorted(r["original"] for r in rows) == ["car", "cat", "dog", "ship"]
    assert sum(r["n"] for r in rows) == len(data["labels"])
    wrong = int((data["probs"].argmax(1) != data["labels"]).sum())
    assert sum(r["mistakes"] for r in rows) == wrong
    assert data["calibration"]["temperature"] > 0 and data["calibration"]["after"] is not None
    assert data["images"].shape[0] == len(data["labels"])
    assert len(data["confident_wrong"]) == min(5, wrong)


def test_report_still_builds_without_the_dataset(grouped_run, tmp_path, monkeypatch):
    def missing(*_args, **_kwargs):
        raise ImgclfError("dataset folder not found")

    monkeypatch.setattr(report, "load_split_images", missing)
    out = report.write_report(grouped_run, tmp_path / "r.html")
    page = out.read_text()
    assert "test images unavailable" in page and "temperature scaling skipped" in page
    assert 'class="thumb"' not in page and '<section id="wrong">' in page


def test_report_of_a_cifar_sized_test_set_stays_under_15_mb():
    """10,000 noise thumbnails (PNG's worst case) and 10 classes: the galleries are capped, the figures fixed."""
    rng = np.random.default_rng(0)
    n, k = 10_000, 10
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    classes = [f"class{i}" for i in range(k)]
    data = {"run": "runs/big", "member": "runs/big", "info": {}, "config": {}, "group": None, "notes": [],
            "metrics": {"accuracy": 0.5, "per_class": []}, "epochs": {"epoch": np.arange(3), "train_loss": np.ones(3)},
            "classes": classes, "orig_classes": None, "probs": probs, "labels": labels,
            "ids": np.array([f"test/{i}" for i in range(n)]), "orig_labels": np.array([]),
            "images": rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
            "model": {"params": 1, "flops": 1, "input_size": 32, "array_size": 32, "channels": 3}}
    data.update(report.analyse(probs, labels, classes, examples=40))
    page = report.render_html(data)
    assert len(page.encode()) < 15e6
    assert page.count('class="thumb"') == 40 + 40 + 10 * 8


def test_cli_report_writes_the_file_and_rejects_a_missing_run(grouped_run, tmp_path, capsys):
    out = tmp_path / "sub" / "cli.html"
    assert main(["report", str(grouped_run), "--out", str(out), "--examples", "4", "--no-calibrate"]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no browser download needed)")
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return sync_playwright


def test_report_renders_offline_in_headless_chromium(html_file, tmp_path):
    sync_playwright = _playwright()
    requested = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium"),
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", lambda route: (requested.append(route.request.url), route.abort())
                       if not route.request.url.startswith(("file:", "data:")) else route.continue_())
            page.goto(html_file.as_uri(), wait_until="load")
            sizes = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, "
                       "e.getBoundingClientRect().width, e.getBoundingClientRect().height])")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert requested == []
    assert len(sizes) >= 16
    assert all(done and nw > 0 and nh > 0 and w > 0 and h > 0 for done, nw, nh, w, h in sizes), sizes
    from PIL import Image

    with Image.open(shot) as im:
        assert im.width == 1280 and im.height > 2000


def test_report_of_a_seed_group_summarises_seeds_and_analyses_the_best_one(grouped_run, tmp_path):
    from imgclf.evaluation.evaluate import summarize_group
    from imgclf.runs import read_json, write_json

    group = tmp_path / "group"
    for i, val_acc in enumerate((0.5, 0.9)):
        member = shutil.copytree(grouped_run, group / f"seed-{i}")
        info = read_json(member / "run.json")
        write_json(member / "run.json", {**info, "seed": i, "best_val_acc": val_acc})
    write_json(group / "group.json", {"members": ["seed-0", "seed-1"], "config": {}})
    summarize_group(group, [read_json(group / m / "metrics.json") for m in ("seed-0", "seed-1")])
    data = report.collect(group, examples=3, calibrate=False)
    assert Path(data["member"]).name == "seed-1" and data["group"]["seeds"] == 2
    page = report.render_html(data)
    assert "2 seeds; mean ± std" in page and "<code>seed-1</code>" in page


def test_validation_predictions_are_cached_and_reused(grouped_run, monkeypatch):
    import importlib

    evaluate = importlib.import_module("imgclf.evaluation.evaluate")  # the module, not the re-exported function
    cache = grouped_run / "val_predictions.npz"
    cache.unlink(missing_ok=True)
    first = report.collect(grouped_run, examples=2)["calibration"]["temperature"]
    assert cache.is_file()
    monkeypatch.setattr(evaluate, "predict_probs", lambda *a, **k: pytest.fail("validation pass not cached"))
    assert report.collect(grouped_run, examples=2)["calibration"]["temperature"] == first
