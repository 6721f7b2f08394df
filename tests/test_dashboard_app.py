"""Every dashboard page rendered by Streamlit's AppTest on tiny trained runs: no exception, the key widgets present,
and the interactions that matter (cell selection, uploads, test-image picks, saved notes, run selection)."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit", reason="the dashboard needs streamlit (pip install 'imgclf[dashboard]')")
pytest.importorskip("plotly", reason="the dashboard needs plotly (pip install 'imgclf[dashboard]')")

from streamlit.testing.v1 import AppTest  # noqa: E402

from helpers_report import make_folder_dataset, train_tiny  # noqa: E402
from imgclf.dashboard import APP  # noqa: E402
from imgclf.runs import read_json, write_json  # noqa: E402

PAGES = {"summary": "views/summary.py", "data": "views/data.py", "performance": "views/performance.py",
         "classifier": "views/classifier.py", "findings": "views/findings.py"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/ with two finished runs of a 4-class colour dataset (cnn3, then lenet5, newest first)."""
    root = tmp_path_factory.mktemp("dash-app")
    data = make_folder_dataset(root / "photos")
    first = train_tiny(data, root / "runs", "first", threads=1).run_dir
    second = train_tiny(data, root / "runs", "second", threads=1, model="lenet5").run_dir
    return {"root": root / "runs", "first": first, "second": second, "data": data}


def app(monkeypatch, runs_path, page: str = "summary") -> AppTest:
    monkeypatch.setenv("IMGCLF_DASHBOARD_RUNS", str(runs_path))
    at = AppTest.from_file(str(APP), default_timeout=90).run()
    if page != "summary":
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def copy_run(run, dest):
    return shutil.copytree(run, dest)


def _png(colour=(220, 40, 40), size=(60, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_every_page_renders_with_its_key_widgets(monkeypatch, runs):
    run = runs["first"]
    classes = read_json(run / "run.json")["dataset"]["classes"]
    at = app(monkeypatch, run)
    assert at.title[0].value == "Project summary · first"
    assert len(at.metric) >= 4 and at.metric[0].label == "accuracy"
    assert at.text_area(key="summary-text") is not None
    assert "images train / val / test" in texts(at.markdown)

    at.switch_page(PAGES["data"]).run()
    assert not at.exception and at.title[0].value == "Data visualizer"
    assert at.selectbox(key="data-class").options == classes
    assert at.radio(key="data-split").options == ["train", "val", "test"]
    assert at.get("image") and len(at.get("plotly_chart")) == 2  # the distribution, the histogram
    assert "duplicate images within train" in texts(at.dataframe)

    at.switch_page(PAGES["performance"]).run()
    assert not at.exception and [s.value for s in at.subheader][:3] == ["Training curves", "Test metrics",
                                                                        "Confusion matrix"]
    assert len(at.get("plotly_chart")) == 4  # curves, confusion matrix, ROC, reliability
    assert at.selectbox(key="cm-true").options == classes and at.selectbox(key="cm-pred").value is None

    at.switch_page(PAGES["classifier"]).run()
    assert not at.exception and at.file_uploader(key="uploads") is not None
    assert at.slider(key="top-k").value == 4 and at.radio(key="method").value == "gradcam"
    assert at.multiselect(key="picks").value == []

    at.switch_page(PAGES["findings"]).run()
    assert not at.exception and "test accuracy" in texts(at.markdown)
    assert at.get("download_button") and at.text_area(key="notes-text") is not None


def test_choosing_a_confusion_matrix_cell_shows_its_test_images(monkeypatch, runs):
    run = runs["first"]
    metrics = read_json(run / "metrics.json")
    cm, classes = np.array(metrics["confusion_matrix"]), [r["class"] for r in metrics["per_class"]]
    i, j = np.unravel_index(np.argmax(cm), cm.shape)
    at = app(monkeypatch, run, "performance")
    at.selectbox(key="cm-true").set_value(classes[i])
    at.selectbox(key="cm-pred").set_value(classes[j]).run()
    assert not at.exception
    assert f"**{cm[i, j]}** test images of **{classes[i]}**" in texts(at.markdown)
    assert len(at.get("image")) == min(int(cm[i, j]), 16)


def test_uploads_are_classified_and_a_bad_file_says_why_without_writing_anything(monkeypatch, runs):
    run = runs["first"]
    before = sorted(p.name for p in run.iterdir())
    at = app(monkeypatch, run, "classifier")
    at.file_uploader(key="uploads").set_value([("red.png", _png(), "image/png"),
                                               ("notes.jpg", b"this is not a jpeg", "image/jpeg")]).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["notes.jpg: not an image (Pillow cannot identify it)"]
    headline = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert len(headline) == 1 and headline[0].split(" · ")[0][4:] in read_json(run / "run.json")["dataset"]["classes"]
    assert "predicted in" in texts(at.caption)
    assert len(at.get("image")) == 2  # the picture and its Grad-CAM overlay
    assert sorted(p.name for p in run.iterdir()) == before  # nothing uploaded lands in the run folder


def test_picked_test_images_are_classified_with_saliency(monkeypatch, runs):
    at = app(monkeypatch, runs["first"], "classifier")
    at.radio(key="method").set_value("saliency")
    at.multiselect(key="picks").set_value([0, 1]).run()
    assert not at.exception
    assert sum("true class:" in m.value for m in at.markdown) == 2
    assert sum(m.value.startswith("### ") for m in at.markdown) == 2


def test_business_question_and_notes_are_saved_in_the_run_folder(monkeypatch, runs, tmp_path):
    run = copy_run(runs["first"], tmp_path / "mine")
    at = app(monkeypatch, run)
    at.text_area(key="summary-text").input("Which parts are **scratched**?")
    at.form_submit_button[0].click().run()
    assert (run / "summary.md").read_text() == "Which parts are **scratched**?"
    assert "Which parts are **scratched**?" in texts(at.markdown)
    at.switch_page(PAGES["findings"]).run()
    at.text_area(key="notes-text").input("#### Hypothesis\nred is easy")
    at.form_submit_button[0].click().run()
    assert not at.exception and (run / "notes.md").read_text() == "#### Hypothesis\nred is easy"
    assert "red is easy" in texts(at.markdown)


def test_temperature_scaling_is_fitted_on_request_and_cached_in_the_run(monkeypatch, runs, tmp_path):
    run = copy_run(runs["first"], tmp_path / "calib")
    (run / "val_predictions.npz").unlink(missing_ok=True)
    at = app(monkeypatch, run, "performance")
    assert len(at.get("dataframe")) and "temperature scaling, T =" not in texts(at.dataframe)
    next(b for b in at.button if b.label.startswith("Fit temperature scaling")).click().run()
    assert not at.exception and (run / "val_predictions.npz").is_file()
    assert "temperature scaling, T =" in texts(at.dataframe)
    at.switch_page(PAGES["findings"]).run()
    assert "fitted on validation" in texts(at.markdown)


def test_several_runs_are_chosen_in_the_sidebar_and_compared(monkeypatch, runs):
    at = app(monkeypatch, runs["root"])
    select = at.sidebar.selectbox(key="run")
    assert [o.split(" · ")[:2] for o in select.options] == [["second", "lenet5"], ["first", "cnn3"]]  # newest first
    assert at.title[0].value == "Project summary · second"
    select.set_value(str(runs["first"])).run()
    assert at.title[0].value == "Project summary · first"
    at.switch_page(PAGES["performance"]).run()
    at.multiselect(key="compare-runs").set_value([str(runs["second"])]).run()
    assert not at.exception and "Runs compared" in [s.value for s in at.subheader]
    assert "model=lenet5" in texts(at.dataframe)


def test_a_run_whose_dataset_is_gone_still_shows_what_its_files_hold(monkeypatch, runs, tmp_path):
    run = copy_run(runs["first"], tmp_path / "moved")
    config = (run / "config.yaml").read_text().replace(str(runs["data"]), str(tmp_path / "gone"))
    (run / "config.yaml").write_text(config)
    at = app(monkeypatch, run, "data")
    assert "only what the run files hold is shown" in texts(at.warning)
    assert "Class distribution (test split, from the stored predictions)" in [s.value for s in at.subheader]
    at.switch_page(PAGES["performance"]).run()
    metrics = read_json(run / "metrics.json")
    i, j = np.unravel_index(np.argmax(metrics["confusion_matrix"]), (len(metrics["per_class"]),) * 2)
    at.selectbox(key="cm-true").set_value(metrics["per_class"][i]["class"])
    at.selectbox(key="cm-pred").set_value(metrics["per_class"][j]["class"]).run()
    assert not at.exception and "the dataset is unavailable" in texts(at.caption)
    at.switch_page(PAGES["classifier"]).run()
    assert not at.exception and "Test images unavailable" in texts(at.caption)


def test_an_unevaluated_run_and_a_seed_group_render(monkeypatch, runs, tmp_path):
    bare = copy_run(runs["first"], tmp_path / "bare")
    for name in ("metrics.json", "test_predictions.npz"):
        (bare / name).unlink()
    for page in PAGES:
        at = app(monkeypatch, bare, page)
    assert "No test predictions" in texts(at.caption)

    group = tmp_path / "group"
    for i, val_acc in enumerate((0.2, 0.9)):
        member = copy_run(runs["first"], group / f"seed-{i}")
        write_json(member / "run.json", {**read_json(member / "run.json"), "seed": i, "best_val_acc": val_acc})
    write_json(group / "group.json", {"members": ["seed-0", "seed-1"], "config": {}})
    m = read_json(group / "seed-0" / "metrics.json")
    write_json(group / "metrics.json", {"seeds": 2, "accuracy": m["accuracy"], "accuracy_std": 0.01})
    at = app(monkeypatch, group)
    assert at.metric[0].value.endswith("± 0.0100") and "best seed `seed-1`" in texts(at.caption)
