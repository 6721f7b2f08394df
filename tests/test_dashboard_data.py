"""The dashboard's computations without Streamlit: runs, tables, pixel statistics, data quality, cells, uploads,
findings, the Plotly figures and the classify helpers, and the ``imgclf dashboard`` command's checks."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_report import make_folder_dataset, train_tiny
from imgclf.dashboard import data as dd
from imgclf.data.images import ImageError
from imgclf.errors import ImgclfError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash-data")
    return train_tiny(make_folder_dataset(root / "photos"), root / "runs", "tiny", threads=1).run_dir


def _png(size=(40, 30), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


# runs -----------------------------------------------------------------------------------------------------------------

def _fake_run(path, **info):
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps(info or {"status": "finished"}))
    return path


def test_discover_runs_takes_a_run_or_the_runs_in_a_folder_newest_first(tmp_path):
    old = _fake_run(tmp_path / "runs" / "old")
    new = _fake_run(tmp_path / "runs" / "new")
    os.utime(old, (time.time() - 100, time.time() - 100))
    (tmp_path / "runs" / "not-a-run").mkdir()
    group = tmp_path / "runs" / "group"
    _fake_run(group / "seed-0")
    (group / "group.json").write_text(json.dumps({"members": ["seed-0"]}))
    os.utime(group, (time.time() - 50, time.time() - 50))
    assert dd.discover_runs(tmp_path / "runs") == [new, group, old]  # seed folders are not listed on their own
    assert dd.discover_runs(new) == [new]
    assert dd.discover_runs(group) == [group]


def test_detail_member_is_the_best_finished_seed_or_the_first_while_none_finished(tmp_path):
    group = tmp_path / "group"
    for i, acc in enumerate((0.9, 0.5)):
        _fake_run(group / f"seed-{i}", best_val_acc=acc)
    (group / "group.json").write_text(json.dumps({"members": ["seed-0", "seed-1"]}))
    assert dd.detail_member(group) == group / "seed-0"  # training: no model.pt yet
    (group / "seed-1" / "model.pt").write_bytes(b"x")
    assert dd.detail_member(group) == group / "seed-1"  # the only finished seed
    assert dd.detail_member(group / "seed-0") == group / "seed-0"


def test_discover_runs_errors_name_the_folder(tmp_path):
    with pytest.raises(ImgclfError, match="run folder not found: .*nope"):
        dd.discover_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImgclfError, match="neither a run folder"):
        dd.discover_runs(tmp_path / "empty")


def test_text_files_round_trip_and_unwritable_place_is_one_line_error(tmp_path):
    path = tmp_path / "summary.md"
    assert dd.read_text(path, "default") == "default"
    dd.write_text(path, "# Question\nwhich cats?")
    assert dd.read_text(path) == "# Question\nwhich cats?"
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImgclfError, match="cannot save"):
        dd.write_text(tmp_path / "file" / "notes.md", "no")  # the parent is a file


# summary --------------------------------------------------------------------------------------------------------------

def test_headline_prefers_group_mean_and_std_and_skips_missing_values():
    metrics = {"accuracy": 0.8, "macro_f1": 0.7, "top5_accuracy": 0.99, "roc_auc": None, "tta": True}
    rows = dd.headline(metrics)
    assert [r["name"] for r in rows] == ["accuracy", "top-5 accuracy", "macro F1"]
    group = {"accuracy": 0.75, "accuracy_std": 0.02, "macro_f1": 0.7, "macro_f1_std": 0.01, "seeds": 3}
    assert dd.headline(metrics, group)[0] == {"name": "accuracy", "key": "accuracy", "value": 0.75, "std": 0.02}


def test_overview_describes_data_model_recipe_time_and_hardware():
    info = {"dataset": {"classes": ["a", "b"], "n_train": 10, "n_val": 2, "n_test": 3, "image_size": 32, "channels": 3},
            "environment": {"processor": "x86_64", "cpu_cores": 2, "torch_threads": 1, "gpu": None, "git": "abc"},
            "train_seconds": 12.34, "epochs_done": 2, "seed": 0}
    cfg = {"dataset": "cifar10", "model": "resnet-fast", "optimizer": "sgd", "lr": 0.37500000000000006, "epochs": 2}
    rows = {r["item"]: r["value"] for r in dd.overview(info, cfg)}
    assert rows["images train / val / test"] == "10 / 2 / 3"
    assert "lr 0.375," in rows["optimiser"]
    assert rows["training time"] == "12.3 s" and "GPU: none" in rows["machine"] and rows["git"] == "abc"
    assert {r["section"] for r in dd.overview(info, cfg)} == {"data", "model", "recipe", "time", "hardware"}


def test_markdown_table_escapes_pipes_and_newlines():
    table = dd.markdown_table([{"a": "x|y", "b": "1\n2"}], ["a", "b"])
    assert table.splitlines()[2] == "| x\\|y | 1 2 |"


# data -----------------------------------------------------------------------------------------------------------------

def test_class_distribution_counts_per_split_and_imbalance():
    rows = dd.class_distribution({"train": np.array([0, 0, 0, 1]), "test": np.array([1, 2])}, ["a", "b", "c"])
    assert rows == [{"class": "a", "train": 3, "test": 0, "total": 3, "share": 0.5},
                    {"class": "b", "train": 1, "test": 1, "total": 2, "share": 0.3333},
                    {"class": "c", "train": 0, "test": 1, "total": 1, "share": 0.1667}]
    assert dd.imbalance(rows) == 3.0
    assert dd.imbalance(rows, "train") == float("inf")


def test_page_of_clamps_the_page_and_counts_pages():
    idx = np.arange(10)
    assert dd.page_of(idx, 3, 4)[0].tolist() == [8, 9]
    assert dd.page_of(idx, 99, 4)[0].tolist() == [8, 9]
    assert dd.page_of(idx, 0, 4)[0].tolist() == [0, 1, 2, 3]
    assert dd.page_of(np.array([], dtype=int), 1, 4)[1] == 1


def test_to_display_enlarges_by_pixel_repetition():
    img = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)[0]
    big = dd.to_display(img, min_side=10)
    assert big.shape == (12, 12, 3) and (big[:3, :3] == img[:, 0, 0]).all()
    assert dd.to_display(np.zeros((1, 8, 8), np.uint8), 4).shape == (8, 8)


def test_pixel_stats_per_channel_histogram_and_brightness_by_class():
    images = np.zeros((4, 3, 2, 2), np.uint8)
    images[:, 0] = 100
    images[2:, 2] = 250
    stats = dd.pixel_stats(images, np.array([0, 0, 1, 1]), ["dark", "blue"])
    assert [c["channel"] for c in stats["channels"]] == ["red", "green", "blue"]
    assert stats["channels"][0]["mean"] == 100 and stats["channels"][0]["std"] == 0
    assert stats["channels"][2]["mean"] == 125 and stats["channels"][2]["max"] == 250
    assert stats["histogram"].shape == (3, 256) and stats["histogram"][0, 100] == 16
    assert [round(b["mean"], 2) for b in stats["brightness"]] == [33.33, 116.67]
    sub = dd.pixel_stats(np.zeros((50, 1, 2, 2), np.uint8), max_images=10)
    assert sub["n"] == 10 and sub["of"] == 50 and sub["channels"][0]["channel"] == "gray" and sub["brightness"] == []


def test_quality_counts_find_duplicates_leakage_and_flat_images():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    train[4] = train[0]  # a duplicate inside train
    test = np.concatenate([train[1:2], np.full((1, 3, 4, 4), 7, np.uint8)])  # one leaked, one flat
    rows = {r["check"]: r["count"] for r in dd.quality_counts({"train": train, "test": test}, ["bad.jpg: truncated"])}
    assert rows == {"unreadable files skipped": 1, "duplicate images within train": 1,
                    "duplicate images within test": 0, "test images also in train": 1, "flat images in train": 0,
                    "flat images in test": 1}


def test_clean_report_is_found_and_read_whatever_its_shape(tmp_path):
    assert dd.find_clean_report([tmp_path]) is None
    (tmp_path / ".imgclf").mkdir()
    path = tmp_path / ".imgclf" / "clean.json"
    path.write_text(json.dumps({"counts": {"exact_duplicates": 3, "corrupt": 1}, "version": "x"}))
    assert dd.find_clean_report([tmp_path / "elsewhere", tmp_path]) == path
    assert dd.clean_counts(path) == [{"check": "exact duplicates", "count": 3}, {"check": "corrupt", "count": 1}]
    path.write_text(json.dumps({"duplicates": ["a", "b"], "blurry": 2, "ok": True, "root": "/x"}))
    assert dd.clean_counts(path) == [{"check": "duplicates", "count": 2}, {"check": "blurry", "count": 2}]
    path.write_text('{"issue": "duplicate", "file": "a"}\n{"issue": "duplicate"}\n{"kind": "corrupt"}\nnot json\n')
    assert dd.clean_counts(path) == [{"check": "duplicate", "count": 2}, {"check": "corrupt", "count": 1}]
    path.write_text("garbage")
    assert dd.clean_counts(path) == []


# performance ----------------------------------------------------------------------------------------------------------

def test_selected_cell_reads_the_clicked_marker_of_a_plotly_event():
    assert dd.selected_cell({"points": [{"x": "dog", "customdata": [2, 1, 7]}]}) == (2, 1)
    assert dd.selected_cell({"points": [], "box": []}) is None
    assert dd.selected_cell(None) is None
    assert dd.selected_cell(type("Sel", (), {"points": [{"customdata": [0, 3]}]})()) == (0, 3)


def test_cell_indices_lists_every_image_of_the_cell_most_confident_first():
    labels = np.array([0, 0, 0, 1])
    probs = np.array([[0.4, 0.6], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert dd.cell_indices(labels, probs, 0, 1).tolist() == [1, 0]
    assert dd.cell_indices(labels, probs, 1, 0).tolist() == []
    assert dd.cell_indices(labels, probs, 0, 0).tolist() == [2]


def test_confusion_figure_puts_a_clickable_marker_on_every_cell():
    from imgclf.dashboard.figures import confusion_figure

    fig = confusion_figure(np.array([[3, 1, 0], [0, 4, 2], [1, 0, 5]]), ["a", "b", "c"], selected=(1, 2))
    heat, markers = fig.data
    assert [list(c) for c in markers.customdata][5] == [1, 2, 2]
    assert len(markers.customdata) == 9 and markers.x[5] == "c" and markers.y[5] == "b"
    assert heat.z[1][2] == pytest.approx(2 / 6)
    assert list(fig.layout.yaxis.range) == [2.5, -0.5] and fig.layout.clickmode == "event+select"
    assert len(fig.layout.shapes) == 1


# uploads --------------------------------------------------------------------------------------------------------------

def test_check_upload_refuses_too_many_bytes_or_pixels_and_non_images():
    assert dd.check_upload("ok.png", _png(), max_pixels=10_000).size == (40, 30)
    with pytest.raises(ImageError, match="big.png: file too large"):
        dd.check_upload("big.png", _png(), max_pixels=10_000, max_bytes=10)
    with pytest.raises(ImageError, match="wide.png: image too large"):
        dd.check_upload("wide.png", _png((200, 100)), max_pixels=10_000)
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        dd.check_upload("notes.jpg", b"hello, not a jpeg", max_pixels=10_000)
    with pytest.raises(ImageError, match="empty.png: empty"):
        dd.check_upload("empty.png", b"", max_pixels=10_000)
    assert dd.MAX_UPLOAD_PIXELS < 40_000_000  # tighter than the run's default decompression-bomb limit


def test_classify_upload_gives_top_k_and_a_heat_map_of_the_shown_picture(tiny_run):
    from imgclf.dashboard.classify import classify_array, classify_upload
    from imgclf.evaluation.explain import Explainer
    from imgclf.infer.predict import Predictor

    predictor, explainer = Predictor(tiny_run), Explainer(tiny_run)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8)).save(buf, "JPEG")
    out = classify_upload(predictor, explainer, "photo.jpg", buf.getvalue(), top_k=3)
    assert out.error is None and len(out.top_k) == 3 and out.label in predictor.classes
    assert out.top_k[0]["probability"] >= out.top_k[1]["probability"]
    assert out.image.size == (512, 384) and out.overlay.size == out.image.size  # shown at most 512 px
    assert out.predict_seconds > 0 and out.explain_seconds > 0
    assert predictor.predict([buf.getvalue()], top_k=3)[0]["top_k"] == out.top_k  # the same as `imgclf predict`
    bad = classify_upload(predictor, explainer, "bad.png", b"\x89PNG\r\n\x1a\n truncated", top_k=3)
    assert bad.error.startswith("bad.png: ") and bad.top_k == [] and bad.overlay is None
    test = classify_array(predictor, explainer, "test/1", np.full((3, 16, 16), 90, np.uint8), method="saliency")
    assert test.overlay.size == test.image.size == (192, 192) and len(test.top_k) == 4


# findings -------------------------------------------------------------------------------------------------------------

def _metrics():
    per_class = [{"class": "cat", "precision": 0.7, "recall": 0.4, "f1": 0.51, "support": 10},
                 {"class": "dog", "precision": 0.5, "recall": 0.8, "f1": 0.62, "support": 10},
                 {"class": "car", "precision": 0.95, "recall": 0.95, "f1": 0.95, "support": 10}]
    return {"accuracy": 0.7, "macro_f1": 0.69, "n_test": 30, "per_class": per_class}


def _calibration(conf: float, temperature=None, after_ece=None):
    bins = {"count": np.array([0, 30]), "confidence": np.array([np.nan, conf]), "accuracy": np.array([np.nan, 0.7])}
    after = {"ece": after_ece, "bins": bins} if temperature else None
    return {"before": {"ece": abs(conf - 0.7), "bins": bins}, "temperature": temperature, "after": after}


def test_findings_name_failures_weak_classes_calibration_and_training():
    pairs = [{"true": "cat", "predicted": "dog", "count": 5, "share": 0.5}]
    epochs = {"train_acc": np.array([0.5, 0.95]), "val_acc": np.array([0.5, 0.7])}
    rows = dd.findings(_metrics(), pairs, _calibration(0.9), epochs, ["cat", "dog", "car"])
    text = {r["topic"]: [x["finding"] for x in rows if x["topic"] == r["topic"]] for r in rows}
    assert "test accuracy 70.0%" in text["overall"][0] and "33.3%" in text["overall"][0]
    assert text["where it fails"] == ["cat taken for dog: 5 images (50% of cat)"]
    assert [t.split(":")[0] for t in text["classes to improve"]] == ["cat", "dog"]  # car is above the mean F1
    weak = text["classes to improve"]
    assert "recall < precision" in weak[0] and "precision <= recall" in weak[1]
    assert "over-confident" in text["calibration"][0]
    assert "overfitting" in text["training"][0] and "still rising" in text["training"][0]


def test_findings_calibration_uses_the_fitted_temperature_when_there_is_one():
    rows = dd.findings(_metrics(), [], _calibration(0.5, temperature=0.6, after_ece=0.01), {}, ["cat", "dog", "car"])
    cal = next(r["finding"] for r in rows if r["topic"] == "calibration")
    assert "T = 0.60" in cal and "under-confident" in cal and "0.010" in cal
    assert next(r["finding"] for r in rows if r["topic"] == "where it fails") == "no mistakes on the test set"
    assert not any(r["topic"] == "training" for r in rows)


def test_findings_markdown_holds_findings_and_notes():
    md = dd.findings_markdown([{"topic": "overall", "finding": "fine"}], "#### Notes\nmine", "c10")
    assert md.startswith("# Findings: c10") and "**overall**" in md and "- fine" in md and md.endswith("mine\n")


# the command ----------------------------------------------------------------------------------------------------------

def test_dashboard_command_is_headless_without_usage_stats_and_limits_uploads(tmp_path):
    from imgclf.cli_dashboard import streamlit_command

    cmd = streamlit_command(tmp_path, port=8600, host="127.0.0.1", threads=2)
    assert cmd[1:3] == ["-m", "imgclf.dashboard.launch"] and cmd[3].endswith("dashboard/app.py")
    flags = dict(zip(cmd[4:cmd.index("--"):2], cmd[5:cmd.index("--"):2], strict=True))
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.port"] == "8600" and flags["--server.address"] == "127.0.0.1"
    assert int(flags["--server.maxUploadSize"]) == dd.MAX_UPLOAD_BYTES // 1_000_000
    assert cmd[cmd.index("--") + 1 :] == ["--runs", str(tmp_path.resolve()), "--threads", "2"]
    cmd = streamlit_command(tmp_path, data_dir="data")
    assert cmd[-2:] == ["--data-dir", str(Path("data").resolve())]


def test_dashboard_command_rejects_a_missing_run_a_busy_port_and_missing_streamlit(tmp_path, capsys, monkeypatch,
                                                                                   tiny_run):
    import socket

    from imgclf.cli import main

    assert main(["dashboard", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["dashboard", str(tiny_run), "--port", str(s.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    assert main(["dashboard", str(tiny_run)]) == 2
    assert "pip install 'imgclf[dashboard]'" in capsys.readouterr().err


def test_cli_help_does_not_import_streamlit():
    code = ("import sys; from imgclf.cli import main; main(['--help']); main(['dashboard', '--help']); "
            "assert not {'streamlit', 'plotly', 'torch'} & set(sys.modules), sorted(sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert out.returncode == 0, out.stderr[-500:]
    assert "dashboard" in out.stdout


def test_launcher_reads_the_thread_count_meant_for_the_app():
    from imgclf.dashboard.launch import _threads

    assert _threads(["app.py", "--server.port", "9", "--", "--runs", "r", "--threads", "3"]) == 3
    assert _threads(["app.py", "--threads", "5"]) == 1  # before "--" it would be a Streamlit option
    assert _threads(["app.py", "--", "--threads", "x"]) == 1
