"""Driving the dashboard in headless Chromium (Debian's /usr/bin/chromium through Playwright; no browser download).

Shared by tests/test_dashboard_e2e.py and benchmarks/dashboard.py. Every wait is bounded; each page is "done"
when its heading and its last element are shown and Streamlit's running indicator is gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[1]
PAGES = ("Project summary", "Data visualizer", "Model performance", "Image classifier", "Findings")
LAST = {"Project summary": "Training recipe (config.yaml)", "Data visualizer": "Data quality",
        "Model performance": "Calibration", "Image classifier": "Upload images",
        "Findings": "Download findings (markdown)"}  # the last element each page draws
WIDTH = 1400  # px, browser window width


def chromium() -> str | None:
    """Debian's chromium, or None."""
    return CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``imgclf dashboard RUNS`` on 127.0.0.1 in a child process (it execs into Streamlit, so terminate() stops it)."""

    def __init__(self, runs: Path, log: Path, port: int | None = None, threads: int = 1):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        self.log = log
        self._log = open(log, "w")  # noqa: SIM115  (a file, not a pipe: a full or closed pipe blocks the server)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "imgclf", "dashboard", str(runs), "--port",
                                      str(self.port), "--threads", str(threads)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)

    def wait_listening(self, timeout: float = 60.0) -> float:
        """Seconds from start until the port accepts connections."""
        while time.perf_counter() - self.started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the dashboard exited with {self.proc.returncode}: {self.log.read_text()[-800:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"the dashboard did not listen within {timeout} s: {self.log.read_text()[-800:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_done(page, title: str, timeout_ms: int = 60_000) -> None:
    """Until the page's heading and last element are shown and Streamlit is no longer running the script."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_ms)
    page.get_by_text(LAST[title], exact=True).first.wait_for(timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Until Streamlit's running indicator is gone (it appears after a short delay, hence the pause first)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)


def open_page(page, title: str) -> tuple[float, float]:
    """Click the page in the sidebar; (seconds until its heading shows, seconds until its last element shows)."""
    start = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    heading = time.perf_counter() - start
    page.get_by_text(LAST[title], exact=True).first.wait_for(timeout=60_000)
    done = time.perf_counter() - start
    wait_idle(page)
    return heading, done


def screenshot(page, path: Path) -> Path:
    """The whole page (Streamlit scrolls inside its main block, so the window is made as tall as the content)."""
    height = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body).scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": int(min(max(900, height), 8000))})
    page.wait_for_timeout(400)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": WIDTH, "height": 900})
    return path


def click_cell(page, k: int, true_index: int, pred_index: int) -> float:
    """Click confusion-matrix cell (true, predicted) of a k-class matrix; seconds until its images are listed."""
    chart = page.locator(".st-key-cm-chart .js-plotly-plot")
    chart.scroll_into_view_if_needed()
    box = chart.locator(".nsewdrag").first.bounding_box()
    start = time.perf_counter()
    x, y = box["x"] + box["width"] * (pred_index + 0.5) / k, box["y"] + box["height"] * (true_index + 0.5) / k
    page.mouse.click(x, y)
    page.get_by_text("test images of").first.wait_for(timeout=60_000)
    wait_idle(page)
    return time.perf_counter() - start


def upload(page, files: list[Path]) -> float:
    """Upload image files on the classifier page; seconds until the last one's prediction is shown."""
    start = time.perf_counter()
    page.locator('input[type="file"]').set_input_files([str(f) for f in files])
    page.get_by_text("predicted in").nth(len(files) - 1).wait_for(timeout=60_000)
    wait_idle(page)
    return time.perf_counter() - start
