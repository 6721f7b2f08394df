"""The ``imgclf`` command line, in process through ``imgclf.cli.main``: one tiny end-to-end run per command,
and bad inputs that each give exit code 2 and one ``error:`` line on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from imgclf.cli import main

TINY = ["--image-size", "16", "--epochs", "1", "--model", "cnn3", "--batch-size", "8", "--val-fraction", "0.2",
        "--threads", "1", "--no-progress"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One run trained through the CLI (module scope: shared by the evaluate/predict/runs tests)."""
    from conftest import make_folder_dataset

    base = tmp_path_factory.mktemp("cli")
    data = make_folder_dataset(base / "photos", per_class=8)
    code = main(["train", "--dataset", f"folder:{data}", *TINY, "--name", "c", "--runs-dir", str(base / "runs")])
    assert code == 0
    return {"data": data, "runs": base / "runs", "run": base / "runs" / "c"}


def test_datasets(capsys, tmp_path):
    code, out, _ = run(capsys, "datasets", "--data-dir", tmp_path)
    assert code == 0
    for name in ("cifar10", "cifar100", "mnist", "fashion-mnist", "folder:PATH", "csv:FILE"):
        assert name in out
    assert "absent" in out and str(tmp_path) in out


def test_models(capsys):
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["name"] for r in rows} >= {"lenet5", "cnn3", "vgg11-bn", "resnet-fast"}
    assert all(r["params"] > 0 and r["gflops"] > 0 for r in rows)


def test_help(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "train" in out and "predict" in out
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--image-size" in out and "--no-flip" in out
    code, out, err = run(capsys)  # no command: the help, not a traceback
    assert code == 0 and "Commands" in out and err == ""


def test_train(cli_run, capsys):
    run_dir = cli_run["run"]
    assert (run_dir / "model.pt").is_file() and (run_dir / "metrics.json").is_file()
    assert json.loads((run_dir / "run.json").read_text())["config"]["image_size"] == 16


def test_train_with_yaml_and_overrides(capsys, tmp_path, cli_run):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dataset: folder:{cli_run['data']}\nimage_size: 16\nmodel: cnn3\nepochs: 3\nthreads: 1\n")
    code, out, err = run(capsys, "train", "--config", cfg, "epochs=1", "batch_size=8", "--name", "y", "--runs-dir",
                         tmp_path, "--no-progress")
    assert code == 0, err
    assert "test metrics" in out and "accuracy" in out
    saved = json.loads((tmp_path / "y" / "run.json").read_text())["config"]
    assert saved["epochs"] == 1 and saved["batch_size"] == 8  # key=value wins over the YAML file


def test_evaluate(cli_run, capsys):
    code, out, err = run(capsys, "evaluate", cli_run["run"])
    assert code == 0, err
    assert "accuracy" in out and "blue" in out
    accuracy = json.loads((cli_run["run"] / "metrics.json").read_text())["accuracy"]
    assert f"{accuracy:.4f}" in out


def test_predict_table_and_json(cli_run, capsys):
    image = sorted((cli_run["data"] / "red").iterdir())[0]
    code, out, _ = run(capsys, "predict", cli_run["run"], image)
    assert code == 0 and image.name in out and "top 1" in out
    code, out, _ = run(capsys, "predict", "c", image, "--json", "--top-k", "2", "--runs-dir", cli_run["runs"])
    assert code == 0
    result = json.loads(out)
    assert result["input"] == str(image) and len(result["top_k"]) == 2
    code, out, _ = run(capsys, "predict", cli_run["run"], cli_run["data"] / "blue", "--json")
    assert code == 0 and len(out.splitlines()) == 8  # a folder: every image in it


def test_predict_with_a_corrupt_file(cli_run, capsys, tmp_path):
    good = sorted((cli_run["data"] / "green").iterdir())[:2]
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a jpeg")
    code, out, err = run(capsys, "predict", cli_run["run"], good[0], bad, good[1], "--json")
    assert code == 1
    line = one_error_line(err)
    assert "bad.jpg" in line and "not an image" in line
    results = [json.loads(x) for x in out.splitlines()]
    assert [r["input"] for r in results] == [str(good[0]), str(bad), str(good[1])]
    assert "label" in results[0] and "error" in results[1] and "label" in results[2]
    code, out, err = run(capsys, "predict", cli_run["run"], good[0], bad)
    assert code == 1 and good[0].name in out and "bad.jpg" in one_error_line(err)


def test_runs(cli_run, capsys, tmp_path):
    code, out, _ = run(capsys, "runs", "--runs-dir", cli_run["runs"], "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows] == ["c"] and rows[0]["model"] == "cnn3" and rows[0]["status"] == "finished"
    code, out, _ = run(capsys, "runs", "--runs-dir", cli_run["runs"])
    assert code == 0 and "cnn3" in out
    code, out, _ = run(capsys, "runs", "--runs-dir", tmp_path / "none")
    assert code == 0 and "no runs" in out


# bad inputs: exit code 2 and one line ------------------------------------------------------------------------

def test_unknown_dataset(capsys):
    code, _, err = run(capsys, "train", "--dataset", "imagenet")
    line = one_error_line(err)
    assert code == 2 and "unknown dataset 'imagenet'" in line and "cifar10" in line and "folder:PATH" in line


def test_unknown_model(capsys, cli_run, tmp_path):
    code, _, err = run(capsys, "train", "--dataset", f"folder:{cli_run['data']}", "--model", "resnt-fast",
                       "--image-size", "16", "--runs-dir", tmp_path, "--threads", "1")
    line = one_error_line(err)
    assert code == 2 and "did you mean 'resnet-fast'" in line


def test_unknown_key_by_override_and_yaml(capsys, tmp_path):
    code, _, err = run(capsys, "train", "epochz=3")
    line = one_error_line(err)
    assert code == 2 and "'epochz'" in line and "did you mean 'epochs'" in line
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lrr: 0.1\n")
    code, _, err = run(capsys, "train", "--config", cfg)
    line = one_error_line(err)
    assert code == 2 and "'lrr'" in line and "'lr'" in line
    code, _, err = run(capsys, "train", "epochs")
    assert code == 2 and "key=value" in one_error_line(err)


def test_wrong_types(capsys):
    code, _, err = run(capsys, "train", "--epochs", "abc")
    line = one_error_line(err)
    assert code == 2 and "--epochs" in line
    code, _, err = run(capsys, "train", "lr=fast")
    line = one_error_line(err)
    assert code == 2 and "'lr'" in line and "float" in line
    code, _, err = run(capsys, "train", "--no-such-option")
    assert code == 2 and "--no-such-option" in one_error_line(err)
    code, _, err = run(capsys, "train", "--val-fraction", "1.5")
    assert code == 2 and "'val_fraction' is out of range" in one_error_line(err)


def test_missing_folder_and_empty_class(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--dataset", f"folder:{tmp_path / 'nowhere'}")
    assert code == 2 and "dataset folder not found" in one_error_line(err)
    (tmp_path / "ds" / "cats").mkdir(parents=True)
    (tmp_path / "ds" / "dogs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ds" / "cats" / "a.png")
    code, _, err = run(capsys, "train", "--dataset", f"folder:{tmp_path / 'ds'}", "--runs-dir", tmp_path / "r")
    line = one_error_line(err)
    assert code == 2 and "dogs" in line and "no image files" in line


def test_existing_run_needs_overwrite(capsys, cli_run):
    code, _, err = run(capsys, "train", "--dataset", f"folder:{cli_run['data']}", *TINY, "--name", "c",
                       "--runs-dir", cli_run["runs"])
    assert code == 2 and "--overwrite" in one_error_line(err)


def test_missing_run_folder(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", tmp_path / "none")
    assert code == 2 and "run folder not found" in one_error_line(err)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    code, _, err = run(capsys, "predict", tmp_path / "none", tmp_path / "x.png")
    assert code == 2 and "not found" in one_error_line(err) and "run folder" in err


def test_debug_shows_the_traceback(capsys):
    from imgclf.errors import ImgclfError

    with pytest.raises(ImgclfError):
        main(["--debug", "train", "--dataset", "imagenet"])


def test_import_is_fast_and_lazy():
    code = textwrap.dedent("""
        import sys, time
        start = time.perf_counter()
        import imgclf
        elapsed = time.perf_counter() - start
        heavy = sorted(m for m in ("torch", "lightning", "timm", "sklearn", "matplotlib") if m in sys.modules)
        print(elapsed, ",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env=_env()).stdout.split()
    assert float(out[0]) < 2.0
    assert len(out) == 1, f"import imgclf loaded {out[1]}"


def _env() -> dict:
    import os
    from pathlib import Path

    import imgclf

    src = str(Path(imgclf.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
