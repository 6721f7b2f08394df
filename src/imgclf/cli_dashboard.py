"""``imgclf dashboard``: the interactive Streamlit dashboard over one run or a folder of runs.

    imgclf dashboard runs/c10                   # http://127.0.0.1:8501
    imgclf dashboard runs/ --port 8600          # every run in runs/, chosen in the sidebar
    imgclf dashboard runs/c10 --host 0.0.0.0    # reachable from other machines (no authentication!)

After checking the arguments it becomes ``streamlit run imgclf/dashboard/app.py`` (through
``imgclf.dashboard.launch``, which warms up torch meanwhile; ``exec`` on POSIX, a child process elsewhere):
headless, no usage statistics, uploads limited in size. Streamlit is imported only there, so ``imgclf --help``
stays fast.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from imgclf.errors import ImgclfError


def streamlit_command(runs: str | Path, port: int = 8501, host: str = "127.0.0.1", threads: int = 1,
                      max_upload_mb: int | None = None, data_dir: str | None = None) -> list[str]:
    """The command line that serves the dashboard of ``runs`` (a run folder or a folder of runs)."""
    from imgclf.dashboard import APP
    from imgclf.dashboard.data import MAX_UPLOAD_BYTES

    upload_mb = max_upload_mb or max(1, MAX_UPLOAD_BYTES // 1_000_000)
    return [sys.executable, "-m", "imgclf.dashboard.launch", str(APP),  # `streamlit run`, slow imports warmed up
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.address", host, "--server.port", str(port), "--server.maxUploadSize", str(upload_mb),
            "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
            "--", "--runs", str(Path(runs).resolve()), "--threads", str(threads)] + \
        (["--data-dir", str(Path(data_dir).resolve())] if data_dir else [])


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ImgclfError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port "
                              "or --host") from None


def dashboard(runs: Annotated[str, typer.Argument(help="run folder, or a folder of run folders")],
              port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 8501,
              host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")]
              = "127.0.0.1",
              threads: Annotated[int, typer.Option(help="torch CPU threads of the dashboard process", min=1)] = 1,
              data_dir: Annotated[Optional[str], typer.Option(help="where the dataset files are (default: where "
                                                                   "each run says)")] = None,
              ) -> None:
    """Interactive dashboard: project summary, data, model performance, an image classifier, findings."""
    from imgclf.dashboard.data import discover_runs

    found = discover_runs(runs)
    missing = [m for m in ("streamlit", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImgclfError(f"the dashboard needs {' and '.join(missing)}: pip install 'imgclf[dashboard]'")
    if data_dir and not Path(data_dir).is_dir():
        raise ImgclfError(f"--data-dir {data_dir}: folder not found")
    _check_port(host, port)
    print(f"imgclf dashboard of {len(found)} run(s) at http://{host}:{port}  (Ctrl+C to stop)", flush=True)
    command = streamlit_command(runs, port, host, threads, data_dir=data_dir)
    if os.name == "posix":  # become Streamlit: signals (Ctrl+C, kill) reach it directly, no orphan is left behind
        sys.stdout.flush()
        os.execv(command[0], command)
    code = subprocess.call(command)  # pragma: no cover (Windows)
    if code:
        raise typer.Exit(code)
