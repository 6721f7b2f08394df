"""Page 4, image classifier: upload images (or pick test images), see top-k predictions and a Grad-CAM overlay.

Uploads stay in memory: Streamlit holds them in RAM and ``classify`` decodes them from bytes, so nothing uploaded
is written to disk. Files over ``data.MAX_UPLOAD_BYTES`` or ``data.MAX_UPLOAD_PIXELS`` (or the run's own pixel
limit) and files that are not images get a one-line message each; the others are still classified.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

from imgclf.dashboard import classify, figures, loaders, ui
from imgclf.dashboard import data as dd
from imgclf.data.images import IMAGE_EXTENSIONS

MAX_PICKS = 500  # test images offered in the picker
KEEP = 32  # results remembered per session (re-shown without recomputing on page switches)


def _remember(key: tuple, compute) -> classify.Classified:
    """Per-session memo of results (not st.cache_data: one user's uploads must not be served to another)."""
    memo = st.session_state.setdefault("classified", {})
    if key not in memo:
        if len(memo) >= KEEP:
            memo.pop(next(iter(memo)))
        memo[key] = compute()
    return memo[key]


def show(result: classify.Classified, method: str, slot: str) -> None:
    if result.error:
        st.error(result.error)
        return
    c1, c2, c3 = st.columns([1, 1, 1.3])
    c1.image(result.image, caption=result.name, width="stretch")
    if result.overlay is not None:
        c2.image(result.overlay, caption=f"{'Grad-CAM' if method == 'gradcam' else 'saliency'} of "
                                         f"{result.label}", width="stretch")
    with c3:
        top = result.top_k[0]
        st.markdown(f"### {top['label']} · {top['probability']:.1%}")
        st.plotly_chart(figures.topk_figure(result.top_k), width="stretch", key=f"topk-{slot}")
        st.caption(f"predicted in {1000 * result.predict_seconds:.0f} ms, heat map in "
                   f"{1000 * result.explain_seconds:.0f} ms")


def uploads(run: loaders.Run, top_k: int, method: str) -> int:
    files = st.file_uploader("Upload images", type=[e.lstrip(".") for e in IMAGE_EXTENSIONS],
                             accept_multiple_files=True, key="uploads",
                             help=f"at most {dd.MAX_UPLOAD_BYTES // 1_000_000} MB and "
                                  f"{dd.MAX_UPLOAD_PIXELS // 1_000_000} megapixels per image")
    if not files:
        return 0
    predictor, explainer = loaders.models(run)
    for n, f in enumerate(files):
        content = f.getvalue()
        key = (str(run.member), hashlib.sha1(content).hexdigest(), f.name, top_k, method)
        show(_remember(key, lambda f=f, c=content: classify.classify_upload(predictor, explainer, f.name, c, top_k,
                                                                            method)), method, f"u{n}")
    return len(files)


def _random_picks(options: list[int]) -> None:
    rng = np.random.default_rng()
    st.session_state["picks"] = sorted(rng.choice(options, size=min(4, len(options)), replace=False).tolist())


def test_picks(run: loaders.Run, top_k: int, method: str) -> None:
    pred = loaders.predictions(run)
    if pred is None:
        return
    images = loaders.test_images(run, pred["ids"])
    if images is None:
        st.caption("Test images unavailable (the dataset could not be loaded).")
        return
    labels, ids = pred["labels"], pred["ids"]
    options = list(range(min(len(labels), MAX_PICKS)))
    names = [Path(str(ids[i])).name if len(ids) else f"#{i}" for i in options]
    c1, c2 = st.columns([4, 1])
    picks = c1.multiselect("…or pick test images", options, key="picks",
                           format_func=lambda i: f"{names[i]} (true: {run.classes[labels[i]]})")
    c2.button("4 random test images", on_click=_random_picks, args=(options,))
    if not picks:
        return
    predictor, explainer = loaders.models(run)
    for i in picks:
        key = (str(run.member), "test", int(i), top_k, method)
        result = _remember(key, lambda i=i: classify.classify_array(predictor, explainer, names[i], images[i], top_k,
                                                                     method))
        st.markdown(f"true class: **{run.classes[labels[i]]}**")
        show(result, method, f"t{i}")


def render() -> None:
    run = loaders.current_run()
    ui.header("Image classifier", run)
    if not (run.member / "model.pt").is_file():
        st.error(f"{run.member} has no model.pt; did training finish?")
        return
    c1, c2 = st.columns(2)
    top_k = c1.slider("top-k", 1, max(1, min(10, len(run.classes))), min(5, max(1, len(run.classes))), key="top-k")
    method = c2.radio("heat map", ["gradcam", "saliency"], horizontal=True, key="method",
                      format_func=lambda m: {"gradcam": "Grad-CAM", "saliency": "saliency (input gradient)"}[m])
    uploads(run, top_k, method)
    test_picks(run, top_k, method)


render()
