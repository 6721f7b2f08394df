"""Page 5, findings: what the evidence says (auto-filled from the run) and free notes saved in the run folder."""

from __future__ import annotations

import streamlit as st

from imgclf.dashboard import data as dd
from imgclf.dashboard import loaders, ui


def evidence(run: loaders.Run) -> list[dict]:
    result = loaders.analysis(run)
    rows = dd.findings(run.metrics, result["confused_pairs"] if result else [],
                       result["calibration"] if result else None, loaders.epochs(run), run.classes)
    topic = None
    for r in rows:
        if r["topic"] != topic:
            topic = r["topic"]
            st.markdown(f"**{topic.capitalize()}**")
        st.markdown(f"- {r['finding']}")
    if result is None:
        st.caption(f"No test predictions: run `imgclf evaluate {run.path}` for the error analysis.")
    elif result["calibration"]["after"] is None:
        st.caption("Temperature scaling was not fitted (no cached validation predictions): use the button on the "
                   "Model performance page, or `imgclf report`.")
    return rows


def render() -> None:
    run = loaders.current_run()
    ui.header("Findings", run)
    question = dd.read_text(run.path / dd.SUMMARY_FILE, "")
    if question:
        with st.expander("The business question (from the Project summary page)"):
            st.markdown(question)
    st.subheader("What the evidence says")
    rows = evidence(run)
    st.subheader("Hypothesis and notes")
    notes = ui.markdown_editor(run.path / dd.NOTES_FILE, dd.DEFAULT_NOTES, "notes", "notes")
    st.download_button("Download findings (markdown)", dd.findings_markdown(rows, notes, run.name),
                       file_name=f"{run.name}-findings.md", mime="text/markdown")


render()
