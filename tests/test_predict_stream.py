"""Streaming prediction of big folders: stable order, bounded input listing, --out with --resume."""

from __future__ import annotations

import json

from imgclf.cli import main
from imgclf.infer.predict import iter_inputs


def test_iter_inputs_walks_folders_in_sorted_order_lazily(tmp_path):
    for sub in ("b", "a"):
        (tmp_path / sub).mkdir()
        for name in ("2.png", "1.jpg", "notes.txt"):
            (tmp_path / sub / name).write_bytes(b"x")
    stream = iter_inputs([tmp_path], "*")
    assert next(stream) == tmp_path / "a" / "1.jpg"  # a generator: the walk has not listed everything yet
    assert [p.relative_to(tmp_path).as_posix() for p in stream] == ["a/2.png", "b/1.jpg", "b/2.png"]
    assert [p.name for p in iter_inputs([tmp_path], "*.png")] == ["2.png", "2.png"]
    (tmp_path / "a" / "0deeper").mkdir()
    (tmp_path / "a" / "0deeper" / "9.png").write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_inputs([tmp_path / "a"])] == \
        sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "a").rglob("*.*") if p.suffix != ".txt")


def test_predict_out_resumes_after_an_interruption(trained_run, tmp_path, capsys):
    run, data = trained_run["run_dir"], trained_run["data"]
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    assert main(["predict", str(run), str(data), "--out", str(full)]) == 0
    lines = full.read_text().splitlines()
    assert len(lines) == len(list(iter_inputs([data]))) > 10
    # an interrupted run: some complete lines and a torn one
    part.write_text("\n".join(lines[:7]) + "\n" + lines[7][:15])
    assert main(["predict", str(run), str(data), "--out", str(part), "--resume"]) == 0
    assert "resuming: 7 images" in capsys.readouterr().err
    resumed = part.read_text().splitlines()
    assert [json.loads(r)["input"] for r in resumed] == [json.loads(r)["input"] for r in lines]
    assert [json.loads(r)["label"] for r in resumed] == [json.loads(r)["label"] for r in lines]


def test_resume_refuses_results_of_other_inputs(trained_run, tmp_path, capsys):
    run, data = trained_run["run_dir"], trained_run["data"]
    out = tmp_path / "p.jsonl"
    out.write_text(json.dumps({"input": "elsewhere.png", "label": "x"}) + "\n")
    assert main(["predict", str(run), str(data), "--out", str(out), "--resume"]) == 2
    assert "do not match" in capsys.readouterr().err
    assert main(["predict", str(run), str(data), "--resume"]) == 2
