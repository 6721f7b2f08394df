"""Dashboard latency as a user feels it, in headless Chromium: one JSON line.

    PYTHONPATH=src python benchmarks/dashboard.py --quick                   # does it run? (a tiny run, ~40 s)
    PYTHONPATH=src python benchmarks/dashboard.py --run runs/c10 --repeats 3 --shots shots/

What it measures (``imgclf dashboard RUN`` on 127.0.0.1, one torch thread, the browser already open):
  1. first page: seconds from starting the command until page 1 is interactive (its last widget shown and
     Streamlit idle), and until it is complete (the model's size, which needs torch, is drawn last); also until
     the port listens;
  2. page switches: seconds from the sidebar click until the page is complete, first visit (caches cold) and
     ``--repeats`` cached visits per page (mean ± std);
  3. a confusion-matrix click (the largest off-diagonal cell) until its images are listed;
  4. uploads of a 1-megapixel JPEG (a fresh file each time, added to the ones before, which are shown from the
     page's memo): the server's own time for check + decode + predict (with the run's TTA) and for Grad-CAM, read
     from the page, and the wall time from choosing the file until its prediction is shown (upload, rerun and
     drawing included).
The browser, the server and anything else running share the CPU: the load average is recorded before and after.
Needs Debian's chromium and the playwright package (no browser download).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Chromium driver is shared with the end-to-end test
sys.path.insert(0, str(ROOT / "src"))

from helpers_dashboard import (  # noqa: E402
    CHROMIUM_ARGS,
    LAST,
    PAGES,
    Server,
    chromium,
    click_cell,
    open_page,
    screenshot,
    wait_done,
    wait_idle,
)


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 3), "std": round(statistics.stdev(values), 3) if len(values) > 1
            else 0.0, "runs": [round(v, 3) for v in values]}


def photo(path: Path, seed: int, size: tuple[int, int] = (1155, 866)) -> Path:
    """A ~1-megapixel JPEG: a real scene photo from ../shared/data enlarged when present, else smooth noise."""
    from PIL import Image, ImageFilter

    scenes = ROOT.parent / "shared" / "data" / "scenes-mini" / "forest"
    files = sorted(scenes.glob("*.jpg")) if scenes.is_dir() else []
    if files:
        img = Image.open(files[seed % len(files)]).convert("RGB").resize(size, Image.BICUBIC)
    else:
        rng = np.random.default_rng(seed)
        img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).filter(
            ImageFilter.GaussianBlur(3))
    img.save(path, quality=90)
    return path


def quick_run(folder: Path) -> Path:
    from helpers_report import make_folder_dataset, train_tiny

    return train_tiny(make_folder_dataset(folder / "photos"), folder / "runs", "tiny", threads=1).run_dir


def uploads(page, folder: Path, repeats: int) -> dict:
    walls, server_predict, server_explain = [], [], []
    field = page.locator('input[type="file"]')
    for i in range(repeats):  # each new file joins the uploaded ones; the earlier results are shown from memory
        path = photo(folder / f"photo-{i}.jpg", i)
        start = time.perf_counter()
        field.set_input_files(str(path))
        caption = page.get_by_text("predicted in").nth(i)
        caption.wait_for(timeout=60_000)
        walls.append(time.perf_counter() - start)
        ms = [float(x) for x in re.findall(r"(\d+) ms", caption.inner_text())]
        server_predict.append(ms[0] / 1000)
        server_explain.append(ms[1] / 1000)
        wait_idle(page)
    return {"wall_s": mean_std(walls), "server_predict_s": mean_std(server_predict),
            "server_gradcam_s": mean_std(server_explain), "megapixels": 1155 * 866 / 1e6}


def measure(run: Path, repeats: int, shots: Path | None, work: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from imgclf.runs import read_json

    cm = np.array(read_json(run / "metrics.json")["confusion_matrix"])
    off = cm - np.diag(np.diag(cm))
    cell = np.unravel_index(np.argmax(off), off.shape)
    out: dict = {"load_before": os.getloadavg()}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        with Server(run, work / "server.log") as server:
            out["listening_s"] = round(server.wait_listening(), 3)
            page.goto(server.url)
            page.get_by_text(LAST[PAGES[0]], exact=True).first.wait_for(timeout=60_000)
            out["first_page_s"] = round(time.perf_counter() - server.started, 3)  # every widget of page 1 usable
            page.get_by_text("parameters,").first.wait_for(timeout=60_000)  # the model's size, drawn last
            wait_done(page, PAGES[0])
            out["first_page_complete_s"] = round(time.perf_counter() - server.started, 3)
            if shots:
                screenshot(page, shots / "1-summary.png")
            first, cached = {}, {t: [] for t in PAGES}
            for rnd in range(repeats + 1):
                for title in (*PAGES[1:], PAGES[0]):
                    seconds = open_page(page, title)[1]
                    if rnd == 0:
                        first[title] = round(seconds, 3)
                        if shots and title != PAGES[0]:
                            screenshot(page, shots / f"{PAGES.index(title) + 1}-{title.split()[-1].lower()}.png")
                    else:
                        cached[title].append(seconds)
            out["page_first_visit_s"] = first
            out["page_cached_s"] = {t: mean_std(v) for t, v in cached.items() if v}
            open_page(page, "Model performance")
            out["cell_click_s"] = round(click_cell(page, len(cm), int(cell[0]), int(cell[1])), 3)
            open_page(page, "Image classifier")
            out["upload_1mp_jpeg"] = uploads(page, work, repeats)
            if shots:
                screenshot(page, shots / "4b-classifier-upload.png")
        browser.close()
    out["load_after"] = os.getloadavg()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="a trained, evaluated run folder (resnet-fast for the targets)")
    p.add_argument("--quick", action="store_true", help="train a tiny run and measure once (does it run?)")
    p.add_argument("--repeats", type=int, default=3, help="cached page visits and uploads")
    p.add_argument("--shots", type=Path, help="also save a screenshot of each page here")
    args = p.parse_args()
    if chromium() is None:
        sys.exit("error: Debian's chromium is not installed (apt-get install -y chromium)")
    if not args.run and not args.quick:
        sys.exit("error: give --run RUN or --quick")
    import plotly
    import streamlit
    import torch

    import imgclf

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = quick_run(work) if args.quick else args.run
        if args.shots:
            args.shots.mkdir(parents=True, exist_ok=True)
        result = measure(run, 1 if args.quick else args.repeats, args.shots, work)
    info = {"benchmark": "dashboard", "run": str(run) if not args.quick else "quick", "cpu_cores": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "imgclf": imgclf.__version__, "torch": torch.__version__, "streamlit": streamlit.__version__,
            "plotly": plotly.__version__, "torch_threads": 1}
    print(json.dumps({**info, **result}))


if __name__ == "__main__":
    main()
