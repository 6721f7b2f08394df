"""Comparing runs: grouping by config minus seed, mean ± std, the best configuration, CSV and CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from helpers_report import make_folder_dataset, train_tiny
from imgclf.cli import main
from imgclf.config import from_flat, save_config
from imgclf.errors import ImgclfError
from imgclf.evaluation.compare import compare, write_csv
from imgclf.runs import write_json


def fake_run(path: Path, accuracy: float, seed: int = 0, **config) -> Path:
    """A finished single-seed run folder as ``train`` writes it (config.yaml, run.json, metrics.json)."""
    path.mkdir(parents=True)
    flat = {"dataset": "folder:photos", "model": "cnn3", "epochs": 2, "lr": 0.001, "seed": seed,
            "name": path.name, "runs_dir": str(path.parent), **config}
    save_config(from_flat(flat), path / "config.yaml")
    write_json(path / "run.json", {"status": "finished", "seed": seed, "config": flat})
    write_json(path / "metrics.json", {"accuracy": accuracy, "top5_accuracy": 1.0, "macro_f1": accuracy - 0.1,
                                       "roc_auc": 0.9, "train_seconds": 10.0 + seed, "per_class": []})
    return path


def test_runs_differing_only_in_seed_form_one_row_with_mean_and_std(tmp_path):
    fake_run(tmp_path / "a0", 0.80, seed=0)
    fake_run(tmp_path / "a1", 0.84, seed=1, threads=1)  # how a run ran does not make it another configuration
    fake_run(tmp_path / "b0", 0.90, seed=0, lr=0.01)
    fake_run(tmp_path / "b1", 0.86, seed=5, lr=0.01)
    fake_run(tmp_path / "c0", 0.70, seed=0, model="lenet5")
    rows = compare([tmp_path / n for n in ("a0", "a1", "b0", "b1", "c0")])
    assert [r["config"] for r in rows] == ["lr=0.01 model=cnn3", "lr=0.001 model=cnn3", "lr=0.001 model=lenet5"]
    best, second, third = rows
    assert best["best"] and not second["best"] and not third["best"]
    assert best["seeds"] == 2 and best["runs"] == "b0 b1"
    assert best["accuracy_mean"] == pytest.approx(0.88) and best["accuracy_std"] == pytest.approx(0.0282843, 1e-4)
    assert second["accuracy_mean"] == pytest.approx(0.82) and second["lr"] == 0.001
    assert third["seeds"] == 1 and third["accuracy_std"] is None and third["model"] == "lenet5"
    assert best["train_seconds_mean"] == pytest.approx(12.5)


def test_group_folders_count_every_seed_and_duplicates_once(tmp_path):
    group = tmp_path / "g"
    fake_run(group / "seed-0", 0.6, seed=0)
    fake_run(group / "seed-1", 0.7, seed=1)
    write_json(group / "group.json", {"members": ["seed-0", "seed-1"], "config": {}})
    rows = compare([group, group / "seed-1"])
    assert len(rows) == 1 and rows[0]["seeds"] == 2 and rows[0]["config"] == "g"
    assert rows[0]["runs"] == "g/seed-0 g/seed-1" and rows[0]["accuracy_mean"] == pytest.approx(0.65)


def test_unfinished_runs_are_skipped_with_a_warning_and_nothing_left_is_an_error(tmp_path, caplog):
    fake_run(tmp_path / "done", 0.5)
    (tmp_path / "running").mkdir()
    write_json(tmp_path / "running" / "run.json", {"status": "running"})
    rows = compare([tmp_path / "done", tmp_path / "running"])
    assert len(rows) == 1 and "skipped" in caplog.text and "running" in caplog.text
    with pytest.raises(ImgclfError, match="no finished"):
        compare([tmp_path / "running"])
    with pytest.raises(ImgclfError, match="not found"):
        compare([tmp_path / "absent"])


def test_csv_has_one_row_per_configuration(tmp_path):
    fake_run(tmp_path / "a", 0.8)
    fake_run(tmp_path / "b", 0.9, lr=0.01)
    path = write_csv(compare([tmp_path / "a", tmp_path / "b"]), tmp_path / "out" / "compare.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["config"] for r in rows] == ["lr=0.01", "lr=0.001"]
    assert rows[0]["best"] == "True" and rows[0]["accuracy_std"] == "" and float(rows[1]["accuracy_mean"]) == 0.8


@pytest.fixture(scope="module")
def trained_group(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    return train_tiny(make_folder_dataset(root / "photos", per_class=8), root / "runs", "two-seeds", seeds=2).run_dir


def test_cli_compare_on_a_trained_two_seed_run(trained_group, tmp_path, capsys):
    out = tmp_path / "compare.csv"
    assert main(["compare", str(trained_group), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "±" in printed and "★" in printed and "wrote" in printed
    assert main(["compare", str(trained_group), "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["config"] == "two-seeds" and json.loads(line)["best"] is True
    with open(out, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["seeds"] == "2" and row["runs"] == "two-seeds/seed-0 two-seeds/seed-1" and row["accuracy_std"] != ""
    assert main(["compare", str(tmp_path / "nope")]) == 2
