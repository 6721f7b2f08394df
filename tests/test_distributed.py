"""Multi-process training on the CPU (Lightning DDP, gloo): rank 0 alone writes, resume across process counts."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import make_folder_dataset
from imgclf.training.distributed import is_writer, threads_per_process


@pytest.mark.parametrize(("env", "writer"), [
    ({}, True), ({"RANK": "0"}, True), ({"RANK": "1"}, False), ({"LOCAL_RANK": "1"}, False),
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False), ({"SLURM_PROCID": "3"}, False), ({"SLURM_PROCID": "0"}, True),
])
def test_only_global_rank_zero_writes(monkeypatch, env, writer):
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_writer() is writer


def test_threads_are_shared_among_local_cpu_processes():
    cores = os.cpu_count() or 1
    assert threads_per_process(None, 2, "cpu") == max(1, cores // 2)
    assert threads_per_process(3, 2, "cpu") == 3
    assert threads_per_process(None, 1, "cpu") == cores


def _train(cwd: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "SLURM_PROCID"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "imgclf", "train", "--width", "0.25", "--image-size", "16", "--threads", "1",
           "--accelerator", "cpu", "--name", "ddp", "--runs-dir", "runs", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_two_processes_write_one_run_and_resume_with_one(tmp_path):
    data = make_folder_dataset(tmp_path / "data", per_class=16)
    scratch = Path(tempfile.mkdtemp(dir=tmp_path))
    # resnet-fast freezes its whitening bias after the first epoch: DDP must cope with a parameter going idle
    first = _train(tmp_path, scratch, "--dataset", f"folder:{data}", "--epochs", "3", "--devices", "2",
                   "--val-fraction", "0.25", "--batch-size", "8")
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "runs" / "ddp"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp"]  # one run folder, no "-2" twin
    assert len(_rows(run)) == 3  # one row per epoch, not one per process
    # the schedule counts each process's steps: one-cycle ends at 0.07 x the peak, not half-way
    peak = yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"]
    assert float(_rows(run)[-1]["lr"]) == pytest.approx(0.07 * peak, rel=0.05)
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert list(scratch.glob("imgclf-rank-*")) == []  # the other rank's scratch folder is gone
    assert first.stdout.count("test metrics") == 1  # rank 0 alone reports

    again = _train(tmp_path, scratch, "--resume", str(run), "--epochs", "4", "--devices", "1")
    assert again.returncode == 0, again.stderr[-2000:]
    assert [r["epoch"] for r in _rows(run)] == ["0", "1", "2", "3"]
    assert json.loads((run / "run.json").read_text())["epochs_done"] == 4


def test_ddp_learning_rate_follows_the_global_batch():
    from imgclf.training.recipes import resolve

    base = {"model": "resnet-fast", "batch_size": 256, "devices": 1, "num_nodes": 1}
    single = resolve(dict(base), "cifar10", 4576, 32)
    split = resolve({**base, "batch_size": 128, "devices": 2}, "cifar10", 4576, 32)
    assert split["lr"] == pytest.approx(single["lr"])
