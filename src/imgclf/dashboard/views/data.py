"""Page 2, data visualizer: class distribution, a sample grid per class, pixel statistics, data-quality counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from imgclf.dashboard import data as dd
from imgclf.dashboard import figures, loaders, ui

PER_PAGE = 24  # images in one page of the sample grid


def distribution(data: loaders.Data) -> None:
    st.subheader("Class distribution")
    rows = dd.class_distribution({k: p.labels for k, p in data.pools.items()}, data.classes)
    ratio = dd.imbalance(rows)
    c1, c2, c3 = st.columns(3)
    c1.metric("classes", len(data.classes))
    c2.metric("images", sum(len(p) for p in data.pools.values()),
              help=" / ".join(f"{k} {len(p)}" for k, p in data.pools.items()))
    c3.metric("imbalance (largest / smallest class)", "∞" if ratio == float("inf") else f"{ratio:.2f}")
    st.plotly_chart(figures.distribution_figure(rows, list(data.pools)), width="stretch")
    with st.expander("Counts per class and split"):
        st.dataframe(rows, hide_index=True, width="stretch")


def sample_grid(data: loaders.Data) -> None:
    st.subheader("Samples per class")
    c1, c2 = st.columns([2, 1])
    name = c1.selectbox("class", data.classes, key="data-class")
    split = c2.radio("split", list(data.pools), horizontal=True, key="data-split")
    pool = data.pools[split]
    indices = np.flatnonzero(pool.labels == data.classes.index(name))
    st.caption(f"{len(indices)} {split} images of **{name}**, as the model sees them ({pool.images.shape[-1]} px)")
    page = ui.pager(len(indices), PER_PAGE, key=f"data-page-{split}-{name}")
    shown, _ = dd.page_of(indices, page, PER_PAGE)
    ui.image_grid([pool.images[i] for i in shown], [Path(str(pool.ids[i])).name[:18] for i in shown])


def pixels(run: loaders.Run) -> None:
    st.subheader("Pixel statistics (training split)")
    stats = loaders.pixel_stats(str(run.member), loaders.stamp(run.member / "split.json"),
                                loaders.stamp(run.member / "model.pt"))
    st.caption(f"over {stats['n']} of {stats['of']} training images, at the model's input size; the model "
               "normalises its input with its own mean and std")
    c1, c2 = st.columns([1, 2])
    c1.dataframe([{k: round(v, 2) if isinstance(v, float) else v for k, v in ch.items()} for ch in stats["channels"]],
                 hide_index=True, width="stretch")
    if stats["brightness"]:
        c1.dataframe([{"class": b["class"], "mean brightness": round(b["mean"], 1), "std": round(b["std"], 1)}
                      for b in stats["brightness"]], hide_index=True, width="stretch")
    c2.plotly_chart(figures.histogram_figure(stats["histogram"], stats["channels"]), width="stretch")


def quality(run: loaders.Run, data: loaders.Data) -> None:
    st.subheader("Data quality")
    rows = loaders.quality(str(run.member), loaders.stamp(run.member / "split.json"),
                           loaders.stamp(run.member / "model.pt"))
    st.dataframe(rows, hide_index=True, width="stretch")
    folders = [run.path, run.member] + ([Path(data.source)] if data.source else [])
    report = dd.find_clean_report(folders)
    if report is None:
        st.caption("No cleaning report found (looked for " + ", ".join(dd.CLEAN_REPORTS) + " in the run and "
                   "dataset folders); the counts above are computed from the images.")
        return
    counts = dd.clean_counts(report)
    st.markdown(f"From the cleaning report `{report}`:")
    if counts:
        st.dataframe(counts, hide_index=True, width="stretch")
    else:
        st.caption("it holds no counts this page can read")


def fallback(run: loaders.Run, reason: str) -> None:
    """Without the dataset files: the distribution of the test split from the stored predictions."""
    st.warning(f"The dataset could not be loaded, so only what the run files hold is shown: {reason}. If the files "
               "moved, start the dashboard with `--data-dir DIR`.")
    pred = loaders.predictions(run)
    if pred is not None:
        st.subheader("Class distribution (test split, from the stored predictions)")
        rows = dd.class_distribution({"test": pred["labels"]}, run.classes)
        st.plotly_chart(figures.distribution_figure(rows, ["test"]), width="stretch")


def render() -> None:
    run = loaders.current_run()
    ui.header("Data visualizer", run)
    data, reason = loaders.try_dataset(run)
    if data is None:
        fallback(run, reason)
        return
    distribution(data)
    sample_grid(data)
    pixels(run)
    quality(run, data)


render()
