"""The dashboard's cached loader layer: every file of a run is read once per change, every model loaded once.

Small results (JSON, predictions, the error analysis, pixel statistics) go through ``st.cache_data`` keyed by the
file's path and modification time, so an edited or re-evaluated run is picked up on the next rerun. The dataset and
the models go through ``st.cache_resource`` (shared, never copied: a dataset can be hundreds of MB).
Nothing here recomputes what the run stored: metrics come from metrics.json, predictions from test_predictions.npz,
validation predictions from val_predictions.npz (written by ``imgclf report`` or the calibration button).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from imgclf.dashboard import data as dd
from imgclf.errors import ImgclfError

RUNS_ENV = "IMGCLF_DASHBOARD_RUNS"  # the run folder (or folder of runs) when no --runs argument is given


def settings() -> dict[str, Any]:
    """``{runs, threads, data_dir}`` from the script arguments (``streamlit run app.py -- --runs PATH --threads N
    --data-dir DIR``) or the environment (``IMGCLF_DASHBOARD_RUNS``, ``IMGCLF_DASHBOARD_THREADS``)."""
    args = sys.argv[1:]

    def arg(flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None

    threads = arg("--threads")
    return {"runs": arg("--runs") or os.environ.get(RUNS_ENV),
            "threads": max(1, int(threads)) if threads and threads.isdigit() else dd.env_threads(),
            "data_dir": arg("--data-dir")}


def stamp(path: Path) -> float:
    """Modification time of a file (0 when absent): the cache key that makes an edited file reload."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


# runs -----------------------------------------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, ttl=10)
def run_list(root: str) -> list[str]:
    """The run folders under ``root`` (see ``data.discover_runs``), re-listed at most every 10 s."""
    return [str(p) for p in dd.discover_runs(root)]


@st.cache_data(show_spinner=False, max_entries=256)
def _json(path: str, mtime: float) -> dict:
    from imgclf.runs import read_json

    return read_json(Path(path))


def json_file(path: Path) -> dict | None:
    """A JSON file of the run (cached), or None when absent."""
    t = stamp(path)
    return _json(str(path), t) if t else None


@st.cache_data(show_spinner=False, max_entries=64)
def _config(path: str, mtime: float) -> dict:
    from imgclf.config import read_yaml

    return read_yaml(path)


@dataclass
class Run:
    """One run as the pages see it: the folder (group or single), the seed whose details are shown, its files."""

    path: Path  # the folder given (a single run or a seed group); notes are saved here
    member: Path  # the single-seed run analysed (the best seed of a group)
    info: dict
    config: dict
    metrics: dict  # the member's test metrics
    group: dict | None  # the group's metrics.json (mean ± std over seeds), None for a single run
    classes: list[str] = field(default_factory=list)
    orig_classes: list[str] | None = None

    @property
    def name(self) -> str:
        return self.path.name


def load_run(path: str | Path) -> Run:
    """The selected run's small files, cached; a group is shown through its best seed by validation accuracy."""
    from imgclf.runs import is_group

    path = Path(path)
    member = dd.detail_member(path) if is_group(path) else path
    info = json_file(member / "run.json") or {}
    config = _config(str(member / "config.yaml"), stamp(member / "config.yaml")) \
        if stamp(member / "config.yaml") else info.get("config", {})
    ds = info.get("dataset", {})
    return Run(path, member, info, config, json_file(member / "metrics.json") or {},
               json_file(path / "metrics.json") if is_group(path) else None, list(ds.get("classes") or []),
               ds.get("orig_classes"))


def current_run() -> Run:
    """The run chosen in the sidebar (app.py keeps it in ``st.session_state["run"]``)."""
    path = st.session_state.get("run")
    if not path:
        root = settings()["runs"]
        if not root:
            raise ImgclfError(f"no run given: start with `imgclf dashboard RUN` (or set {RUNS_ENV})")
        path = run_list(root)[0]
    return load_run(path)


# predictions and their analysis ---------------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=16)
def _predictions(member: str, mtime: float) -> dict[str, np.ndarray]:
    from imgclf.evaluation.report import read_predictions

    return read_predictions(Path(member))


def predictions(run: Run) -> dict[str, np.ndarray] | None:
    """test_predictions.npz of the run (probs, labels, ids, orig_labels), or None if it was never evaluated."""
    t = stamp(run.member / "test_predictions.npz")
    return _predictions(str(run.member), t) if t else None


@st.cache_data(show_spinner=False, max_entries=16)
def _epochs(path: str, mtime: float) -> dict[str, np.ndarray]:
    from imgclf.evaluation.report import read_epochs

    return read_epochs(Path(path))


def epochs(run: Run | Path) -> dict[str, np.ndarray]:
    """metrics.csv's per-epoch columns ({} without the file)."""
    member = run.member if isinstance(run, Run) else Path(run)
    return _epochs(str(member / "metrics.csv"), stamp(member / "metrics.csv"))


@st.cache_data(show_spinner=False, max_entries=16)
def _val_predictions(path: str, mtime: float) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return z["probs"], z["labels"]


@st.cache_data(show_spinner="Analysing the test predictions…", max_entries=16)
def _analysis(member: str, pred_mtime: float, val_mtime: float, classes: tuple[str, ...],
              orig_classes: tuple[str, ...] | None) -> dict[str, Any]:
    from imgclf.evaluation.report import analyse, read_predictions

    pred = read_predictions(Path(member))
    val = _val_predictions(str(Path(member) / "val_predictions.npz"), val_mtime) if val_mtime else (None, None)
    return analyse(pred["probs"], pred["labels"], list(classes), pred["orig_labels"],
                   list(orig_classes) if orig_classes else None, val[0], val[1], examples=40)


def analysis(run: Run) -> dict[str, Any] | None:
    """``report.analyse`` of the stored test predictions (with temperature scaling when validation predictions
    were cached by ``imgclf report``), or None if the run has no predictions."""
    t = stamp(run.member / "test_predictions.npz")
    if not t:
        return None
    return _analysis(str(run.member), t, stamp(run.member / "val_predictions.npz"), tuple(run.classes),
                     tuple(run.orig_classes) if run.orig_classes else None)


# the dataset ----------------------------------------------------------------------------------------------------------

@dataclass
class Data:
    """The run's dataset rebuilt from its recorded split: pools per split, plus what loading skipped."""

    pools: dict[str, Any]  # "train" / "val" / "test" -> imgclf.data.Pool
    classes: list[str]
    skipped: list[str]
    source: str


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=3)
def _dataset(member: str, split_mtime: float, model_mtime: float, data_dir: str | None) -> Data:
    from imgclf.data import load_dataset, splits_from_ids
    from imgclf.runs import read_json

    run = load_run(member)
    cfg = run.config
    meta = _model_meta(member, model_mtime)
    data_dir = data_dir or cfg.get("data_dir")  # --data-dir: the runs' own (maybe relative) paths may not hold
    ds = load_dataset(cfg["dataset"], data_dir=data_dir, image_size=cfg.get("image_size"), classes=cfg.get("classes"),
                      max_pixels=cfg.get("max_pixels", 40_000_000), workers=cfg.get("workers") or 0, progress=False,
                      crop_fraction=meta.get("preprocess", {}).get("crop_fraction", 1.0),
                      resample=meta.get("preprocess", {}).get("resample", "bicubic"))
    splits = splits_from_ids(ds, read_json(Path(member) / "split.json"))
    pools = {name: pool for name, pool in (("train", splits.train), ("val", splits.val), ("test", splits.test))
             if pool is not None}
    return Data(pools, list(ds.classes), list(ds.skipped), ds.source)


def dataset(run: Run) -> Data:
    """The dataset of the run (cached across pages); ImgclfError when its files are not where the run says."""
    return _dataset(str(run.member), stamp(run.member / "split.json"), stamp(run.member / "model.pt"),
                    settings()["data_dir"])


def try_dataset(run: Run) -> tuple[Data | None, str | None]:
    """(dataset, None) or (None, one-line reason) — the pages degrade to what the run files alone can show."""
    try:
        return dataset(run), None
    except ImgclfError as exc:
        return None, str(exc)


@st.cache_data(show_spinner="Computing pixel statistics…", max_entries=8)
def pixel_stats(member: str, split_mtime: float, model_mtime: float) -> dict[str, Any]:
    """Pixel statistics of the training split (at most 5000 images)."""
    data = _dataset(member, split_mtime, model_mtime, settings()["data_dir"])
    train = data.pools["train"]
    return dd.pixel_stats(train.images, train.labels, data.classes)


@st.cache_data(show_spinner="Checking data quality…", max_entries=8)
def quality(member: str, split_mtime: float, model_mtime: float) -> list[dict]:
    """``data.quality_counts`` of the run's splits."""
    data = _dataset(member, split_mtime, model_mtime, settings()["data_dir"])
    return dd.quality_counts({k: p.images for k, p in data.pools.items()}, data.skipped)


def test_images(run: Run, ids: np.ndarray) -> np.ndarray | None:
    """The test images in the order of the stored predictions, or None when the dataset is unavailable."""
    from imgclf.evaluation.report import align_images

    data, _ = try_dataset(run)
    if data is None or "test" not in data.pools:
        return None
    try:
        return align_images(data.pools["test"], ids)
    except ImgclfError:
        return None


# models ---------------------------------------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=16)
def _model_meta(member: str, mtime: float) -> dict:
    import torch

    blob = torch.load(Path(member) / "model.pt", map_location="cpu", weights_only=True)
    return {**blob.get("meta", {}), "arch": blob.get("arch", {})}


def set_threads() -> int:
    """Apply the dashboard's torch thread count (default 1: one image is too little work to split)."""
    import torch

    threads = settings()["threads"]
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def _models(member: str, mtime: float):
    from imgclf.evaluation.explain import Explainer
    from imgclf.infer.predict import Predictor

    return Predictor(member), Explainer(member)


def models(run: Run):
    """(Predictor with the run's TTA, Explainer for Grad-CAM) of the run's model.pt, loaded once."""
    set_threads()
    if not stamp(run.member / "model.pt"):
        raise ImgclfError(f"{run.member} has no model.pt; did training finish?")
    return _models(str(run.member), stamp(run.member / "model.pt"))


@st.cache_data(show_spinner=False, max_entries=16)
def model_summary(member: str, mtime: float) -> dict:
    """Parameters and FLOPs of the run's model (as the report shows them)."""
    from imgclf.models.io import load_model
    from imgclf.models.summary import count_flops, count_params

    set_threads()
    model, meta = load_model(Path(member) / "model.pt")
    spec = meta["preprocess"]
    return {"params": count_params(model), "flops": count_flops(model, (spec["channels"], spec["size"], spec["size"])),
            "input_size": meta["arch"]["input_size"], "array_size": spec["size"], "channels": spec["channels"]}


def clear_run_caches() -> None:
    """Drop cached results (the sidebar's reload button): files are re-read, models and data reloaded."""
    st.cache_data.clear()
    st.cache_resource.clear()
