"""Small Streamlit building blocks shared by the pages: headers, image grids, the markdown editor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from imgclf.dashboard import data as dd
from imgclf.dashboard.loaders import Run
from imgclf.errors import ImgclfError


def header(title: str, run: Run) -> None:
    """Page title and the run it is about (and the seed analysed, for a group)."""
    st.title(title)
    seed = f" · details of its best seed `{run.member.name}`" if run.member != run.path else ""
    st.caption(f"run `{run.path}`{seed}")


def image_grid(images: list[np.ndarray], captions: list[str], width: int = 96, per_row: int = 8) -> None:
    """Images (uint8 (C, H, W) model arrays) in rows, enlarged without blurring, each with a caption."""
    if not images:
        st.info("No images.")
        return
    for start in range(0, len(images), per_row):
        cols = st.columns(per_row)
        for col, img, cap in zip(cols, images[start : start + per_row], captions[start : start + per_row],
                                 strict=False):
            col.image(dd.to_display(img, min_side=width), caption=cap, width=width)


def markdown_editor(path: Path, default: str, key: str, label: str) -> str:
    """A markdown file of the run shown rendered, with an editor that saves it back; returns the current text."""
    text = dd.read_text(path, default)
    st.markdown(text)
    with st.expander(f"Edit {label} (saved as {path.name} in the run folder)"), \
            st.form(key=f"{key}-form", border=False):
        new = st.text_area(label, value=text, height=220, key=f"{key}-text", label_visibility="collapsed")
        if st.form_submit_button("Save", type="primary"):
            try:
                dd.write_text(path, new)
            except ImgclfError as exc:
                st.error(str(exc))
            else:
                st.toast(f"saved {path}")
                st.rerun()
    return text


def pager(n_items: int, per_page: int, key: str) -> int:
    """A page number input (1..pages) shown only when there is more than one page; returns the page."""
    n_pages = max(1, -(-n_items // per_page))
    if n_pages == 1:
        return 1
    return int(st.number_input(f"page (of {n_pages})", min_value=1, max_value=n_pages, value=1, step=1, key=key))
