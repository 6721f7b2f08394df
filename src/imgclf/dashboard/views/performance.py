"""Page 3, model performance: curves, metrics, a clickable confusion matrix, ROC, calibration, confused pairs,
and a comparison with other runs."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgclf.dashboard import data as dd
from imgclf.dashboard import figures, loaders, ui
from imgclf.errors import ImgclfError

PER_PAGE = 16  # images of a confusion-matrix cell per page


def curves(run: loaders.Run, others: list[str]) -> None:
    st.subheader("Training curves")
    epochs = loaders.epochs(run)
    if not epochs:
        st.info("No metrics.csv in the run folder.")
        return
    compared = {Path(p).name: loaders.epochs(loaders.load_run(p)) for p in others}
    st.plotly_chart(figures.curves_figure(epochs, {k: v for k, v in compared.items() if v}), width="stretch")


def metrics_table(run: loaders.Run) -> None:
    st.subheader("Test metrics")
    rows = dd.headline(run.metrics)
    if not rows:
        st.warning(f"No test metrics: run `imgclf evaluate {run.path}`.")
        return
    c1, c2 = st.columns([1, 3])
    c1.dataframe([{"metric": r["name"], "value": round(r["value"], 4)} for r in rows]
                 + [{"metric": "test images", "value": run.metrics.get("n_test")}], hide_index=True, width="stretch")
    c2.dataframe(dd.per_class_rows(run.metrics), hide_index=True, width="stretch")


def _on_click() -> None:
    """Copy the clicked cell into the two selectboxes (which also work on their own, e.g. with a keyboard)."""
    event = st.session_state.get("cm-chart")
    cell = dd.selected_cell(event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None))
    classes = st.session_state.get("cm-classes", [])
    if cell and max(cell) < len(classes):
        st.session_state["cm-true"], st.session_state["cm-pred"] = classes[cell[0]], classes[cell[1]]


def confusion(run: loaders.Run, result: dict, pred: dict) -> None:
    st.subheader("Confusion matrix")
    st.caption("Rows: true class, columns: predicted; colour is the share of the row, numbers are counts. "
               "**Click a cell** to see its test images.")
    classes = run.classes
    st.session_state["cm-classes"] = classes
    if st.session_state.get("cm-true") not in classes:
        st.session_state["cm-true"] = st.session_state["cm-pred"] = None
    selected = None
    if st.session_state.get("cm-true") and st.session_state.get("cm-pred"):
        selected = classes.index(st.session_state["cm-true"]), classes.index(st.session_state["cm-pred"])
    left, right = st.columns([3, 2])
    with left:
        size = min(720, 360 + 24 * len(classes))
        st.plotly_chart(figures.confusion_figure(result["confusion"], classes, selected, size=size), key="cm-chart",
                        on_select=_on_click, selection_mode="points", width="stretch")
    with right:
        c1, c2 = st.columns(2)
        c1.selectbox("true class", classes, key="cm-true", index=None, placeholder="click a cell")
        c2.selectbox("predicted class", classes, key="cm-pred", index=None, placeholder="or choose here")
        if selected is not None:
            cell_images(run, pred, *selected)


def cell_images(run: loaders.Run, pred: dict, i: int, j: int) -> None:
    idx = dd.cell_indices(pred["labels"], pred["probs"], i, j)
    kind = "correctly classified" if i == j else f"predicted as **{run.classes[j]}**"
    st.markdown(f"**{len(idx)}** test images of **{run.classes[i]}** {kind}, most confident first")
    if not len(idx):
        return
    images = loaders.test_images(run, pred["ids"])
    if images is None:
        st.caption("(the dataset is unavailable, so the images cannot be shown)")
        return
    page = ui.pager(len(idx), PER_PAGE, key=f"cm-page-{i}-{j}")
    shown, _ = dd.page_of(idx, page, PER_PAGE)
    ui.image_grid([images[k] for k in shown], [f"{pred['probs'][k, j]:.2f}" for k in shown], per_row=4)


def roc(result: dict) -> None:
    st.subheader("ROC curves (one vs rest)")
    if not result["roc"]:
        st.info("Needs at least two classes present in the test set.")
        return
    st.plotly_chart(figures.roc_figure(result["roc"]), width="stretch")


def calibration(run: loaders.Run, result: dict) -> None:
    st.subheader("Calibration")
    cal = result["calibration"]
    rows = [{"predictions": "uncalibrated", "ECE": round(cal["before"]["ece"], 4), "NLL": round(cal["before"]["nll"],
                                                                                               4)}]
    if cal["after"]:
        rows.append({"predictions": f"temperature scaling, T = {cal['temperature']:.3f} ({cal['n_val']} val images)",
                     "ECE": round(cal["after"]["ece"], 4), "NLL": round(cal["after"]["nll"], 4)})
    st.dataframe(rows, hide_index=True, width="stretch")
    st.plotly_chart(figures.reliability_figure(cal["before"], cal["after"], cal["temperature"]), width="stretch")
    if cal["after"] is None and st.button("Fit temperature scaling on the validation split",
                                          help="one pass over at most 1000 validation images; cached in the run "
                                               "folder as val_predictions.npz, as `imgclf report` does"):
        fit_temperature(run)


def fit_temperature(run: loaders.Run) -> None:
    from imgclf.evaluation.report import validation_probs

    data, reason = loaders.try_dataset(run)
    if data is None or "val" not in data.pools:
        st.error(reason or "the run has no validation split")
        return
    predictor, _ = loaders.models(run)
    with st.spinner("Predicting the validation images…"):
        validation_probs(run.member, predictor.model, data.pools["val"], run.config)
    if not (run.member / "val_predictions.npz").is_file():
        st.error("the run folder is read-only: validation predictions could not be cached")
        return
    st.rerun()


def confused_pairs(result: dict) -> None:
    st.subheader("Most-confused class pairs")
    pairs = result["confused_pairs"]
    if not pairs:
        st.info("No mistakes on the test set.")
        return
    st.dataframe([{"true": p["true"], "predicted as": p["predicted"], "images": p["count"],
                   "share of true class": round(p["share"], 4)} for p in pairs], hide_index=True, width="stretch")


def compare(run: loaders.Run, others: list[str]) -> None:
    from imgclf.evaluation.compare import compare as compare_runs

    st.subheader("Runs compared")
    try:
        rows = compare_runs([str(run.path), *others])
    except ImgclfError as exc:
        st.info(str(exc))
        return
    st.dataframe([{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
                 hide_index=True, width="stretch")


def render() -> None:
    run = loaders.current_run()
    ui.header("Model performance", run)
    runs = loaders.run_list(loaders.settings()["runs"])
    others = []
    if len(runs) > 1:
        others = st.multiselect("Compare with", [r for r in runs if r != str(run.path)], format_func=lambda p:
                                Path(p).name, key="compare-runs", help="overlay their validation accuracy and "
                                                                       "tabulate their test metrics")
    curves(run, others)
    if others:
        compare(run, others)
    metrics_table(run)
    pred, result = loaders.predictions(run), loaders.analysis(run)
    if pred is None or result is None:
        st.warning(f"No test predictions: run `imgclf evaluate {run.path}` to see the confusion matrix and more.")
        return
    confusion(run, result, pred)
    confused_pairs(result)
    c1, c2 = st.columns(2)
    with c1:
        roc(result)
    with c2:
        calibration(run, result)


render()
