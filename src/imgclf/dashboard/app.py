"""The dashboard's entry point: the run selector in the sidebar and the five pages.

    imgclf dashboard runs/c10                                   # what users type
    streamlit run src/imgclf/dashboard/app.py -- --runs runs/c10 --threads 1   # what it launches

The run folder (or folder of runs) comes from ``--runs`` after ``--``, or the ``IMGCLF_DASHBOARD_RUNS`` variable.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgclf.dashboard import loaders
from imgclf.errors import ImgclfError

HERE = Path(__file__).parent
PAGES = (  # (file, title, icon, url path)
    ("views/summary.py", "Project summary", ":material/summarize:", "summary"),
    ("views/data.py", "Data visualizer", ":material/photo_library:", "data"),
    ("views/performance.py", "Model performance", ":material/analytics:", "performance"),
    ("views/classifier.py", "Image classifier", ":material/image_search:", "classifier"),
    ("views/findings.py", "Findings", ":material/lightbulb:", "findings"),
)


def _label(path: str) -> str:
    run = loaders.load_run(path)
    acc = (run.group or run.metrics).get("accuracy")
    return f"{run.name} · {run.config.get('model', '?')}" + (f" · {acc:.1%}" if isinstance(acc, float) else "")


def sidebar(runs: list[str]) -> None:
    """Run selector (when several runs were given) and a reload button."""
    with st.sidebar:
        if len(runs) > 1:
            st.selectbox("Run", runs, format_func=_label, key="run",
                         help=f"{len(runs)} runs under {loaders.settings()['runs']}, newest first")
        else:
            st.session_state["run"] = runs[0]
            st.caption(f"run: **{_label(runs[0])}**")
        if st.button("Reload run files", help="forget cached files, data and models (after re-training, say)"):
            loaders.clear_run_caches()
            st.rerun()


def main() -> None:
    st.set_page_config(page_title="imgclf dashboard", page_icon=":material/image:", layout="wide")
    root = loaders.settings()["runs"]
    try:
        if not root:
            raise ImgclfError(f"no run given: start it with `imgclf dashboard RUN` (or set {loaders.RUNS_ENV})")
        runs = loaders.run_list(root)
    except ImgclfError as exc:
        st.error(str(exc))
        st.stop()
    if st.session_state.get("run") not in runs:
        st.session_state["run"] = runs[0]
    sidebar(runs)
    pages = [st.Page(str(HERE / file), title=title, icon=icon, url_path=url, default=i == 0)
             for i, (file, title, icon, url) in enumerate(PAGES)]
    st.navigation(pages).run()


main()
