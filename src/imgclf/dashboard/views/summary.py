"""Page 1, project summary: what the run is, its headline metrics and the business question it answers."""

from __future__ import annotations

import streamlit as st

from imgclf.dashboard import data as dd
from imgclf.dashboard import loaders, ui


def metrics_row(run: loaders.Run) -> None:
    rows = dd.headline(run.metrics, run.group)
    if not rows:
        st.warning(f"No test metrics yet: run `imgclf evaluate {run.path}`.")
        return
    for col, r in zip(st.columns(len(rows)), rows, strict=True):
        std = f" ± {r['std']:.4f}" if r["std"] is not None and run.group else ""
        col.metric(r["name"], f"{r['value']:.4f}{std}",
                   help=f"mean ± std over {run.group.get('seeds')} seeds" if std else "on the test split")


def model_details(run: loaders.Run) -> None:
    try:
        m = loaders.model_summary(str(run.member), loaders.stamp(run.member / "model.pt"))
    except Exception as exc:  # a missing or unreadable model.pt: the rest of the page still stands
        st.caption(f"model details unavailable: {str(exc).splitlines()[0]}")
        return
    st.caption(f"**{run.config.get('model')}**: {m['params']:,} parameters, {m['flops'] / 1e9:.3f} GFLOPs per "
               f"image at {m['input_size']} px input ({m['array_size']} px arrays, {m['channels']} channel(s))")


def recipe(run: loaders.Run) -> None:
    with st.expander("Training recipe (config.yaml)"):
        path = run.member / "config.yaml"
        st.code(dd.read_text(path, "# no config.yaml in the run folder"), language="yaml")


def render() -> None:
    run = loaders.current_run()
    ui.header(f"Project summary · {run.name}", run)
    status = run.info.get("status")
    if status and status != "finished":
        st.warning(f"This run's status is **{status}**: metrics may be missing or from an unfinished model.")
    metrics_row(run)
    st.subheader("Business question")
    ui.markdown_editor(run.path / dd.SUMMARY_FILE, dd.DEFAULT_SUMMARY, "summary", "business question")
    st.subheader("What this run is")
    st.markdown(dd.markdown_table(dd.overview(run.info, run.config), ["section", "item", "value"]))
    details = st.empty()  # filled last: it loads the model (torch), the rest of the page does not wait for it
    recipe(run)
    with details.container():
        model_details(run)


render()
