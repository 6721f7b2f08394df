"""End to end, as a new user would: ``imgclf dashboard`` on 127.0.0.1, driven in headless Chromium through the
five pages; a confusion-matrix cell is clicked and an image uploaded. A screenshot of each page is saved to
``$IMGCLF_DASHBOARD_SHOTS`` (default: the test's tmp_path) as an artifact."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_dashboard import PAGES, Server, chromium, click_cell, open_page, screenshot, upload, wait_done
from helpers_report import make_folder_dataset, train_tiny
from imgclf.runs import read_json


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no browser download needed)")
    pytest.importorskip("streamlit", reason="the dashboard needs streamlit (pip install 'imgclf[dashboard]')")
    if chromium() is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return sync_playwright


def test_a_new_user_goes_through_the_five_pages_clicks_a_cell_and_uploads_a_photo(tmp_path):
    from helpers_dashboard import CHROMIUM_ARGS

    sync_playwright = _browser()
    shots = Path(os.environ.get("IMGCLF_DASHBOARD_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    run = train_tiny(make_folder_dataset(tmp_path / "photos"), tmp_path / "runs", "tiny", threads=1).run_dir
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(photo)
    metrics = read_json(run / "metrics.json")
    cm = np.array(metrics["confusion_matrix"])
    cell = np.unravel_index(np.argmax(cm), cm.shape)

    with Server(run, tmp_path / "server.log") as server, sync_playwright() as p:
        server.wait_listening()
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server.url)
            wait_done(page, PAGES[0])
            screenshot(page, shots / "1-summary.png")
            for i, title in enumerate(PAGES[1:], start=2):
                open_page(page, title)
                screenshot(page, shots / f"{i}-{title.split()[-1].lower()}.png")
            open_page(page, "Model performance")
            click_cell(page, len(cm), int(cell[0]), int(cell[1]))
            listed = page.get_by_text("test images of").first.inner_text()
            screenshot(page, shots / "3b-performance-cell.png")
            open_page(page, "Image classifier")
            upload(page, [photo])
            predicted = page.get_by_text("predicted in").first.inner_text()
            headline = page.locator("h3").filter(has_text=" · ").first.inner_text()
            screenshot(page, shots / "4b-classifier-upload.png")
        finally:
            browser.close()

    classes = [r["class"] for r in metrics["per_class"]]
    assert listed.startswith(f"{cm[cell]} test images of {classes[cell[0]]}")
    assert headline.split(" · ")[0] in classes and headline.endswith("%")
    assert predicted.startswith("predicted in ") and "heat map in" in predicted
    names = sorted(p.name for p in shots.glob("*.png"))
    assert names == ["1-summary.png", "2-visualizer.png", "3-performance.png", "3b-performance-cell.png",
                     "4-classifier.png", "4b-classifier-upload.png", "5-findings.png"]
    for name in names:
        with Image.open(shots / name) as im:
            assert im.width == 1400 and im.height >= 900
    assert "Traceback" not in (tmp_path / "server.log").read_text()
