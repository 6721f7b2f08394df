"""``imgclf.train``: wires the build steps together (data -> splits -> recipe -> model -> trainer -> evaluation).

Examples:
    >>> result = imgclf.train(dataset="mnist", data_dir="../shared/data/mnist", epochs=1)  # doctest: +SKIP
    >>> result.metrics["accuracy"]  # doctest: +SKIP
    0.987
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.config import Config, from_flat, load_config, read_yaml, save_config
from imgclf.data import Dataset, Splits, dataset_family, load_dataset, make_splits, splits_from_ids
from imgclf.data.loader import Augment
from imgclf.errors import ImgclfError
from imgclf.runs import environment, find_run, members, new_run_dir, read_json, slug, write_json
from imgclf.training import recipes
from imgclf.training.distributed import is_writer, threads_per_process

log = logging.getLogger("imgclf")


@dataclass
class TrainResult:
    run_dir: Path  # the run folder (a group folder when several seeds were trained)
    metrics: dict  # test metrics (mean and *_std over seeds for a group)


def set_threads(threads: int | None) -> int:
    """Use exactly ``threads`` CPU threads (default: every core) and one inter-op thread."""
    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # can only be set once per process
        torch.set_num_interop_threads(1)
    return n


def _quiet_lightning() -> None:
    """Keep Lightning's start-up banners (accelerator, tips) out of the output; warnings still show."""
    import lightning  # noqa: F401  (its import sets its loggers to INFO; lower them afterwards)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")


def check_names(cfg: Config) -> None:
    """Fail on a misspelt dataset or model before any data is read."""
    dataset_family(cfg.data.dataset)
    name = cfg.model.model
    if name and not name.startswith("timm:"):
        from imgclf.models import get_entry

        get_entry(name)
    if not (name or "").startswith("timm:"):
        m = cfg.model
        used = [k for k, on in (("pretrained", m.pretrained), ("weights", m.weights),
                                ("transfer", m.transfer in ("linear-probe", "fine-tune"))) if on]
        if used:
            raise ImgclfError(f"--{used[0]} needs a pretrained backbone (--model timm:NAME); model "
                              f"{name or 'resnet-fast (the default)'!r} trains from scratch")


# build steps -----------------------------------------------------------------------------------------------------

def model_preprocessing(cfg: Config) -> dict[str, Any]:
    """What the model dictates about its input: size, crop, interpolation and (pretrained) mean/std."""
    name = cfg.model.model or ""
    if name.startswith("timm:"):
        from imgclf.models.timm_backbone import timm_data_config

        tc = timm_data_config(name[5:])
        pretrained = cfg.model.pretrained or cfg.model.weights
        return {"image_size": cfg.data.image_size or tc["input_size"], "crop_fraction": tc["crop_fraction"],
                "resample": tc["interpolation"] if tc["interpolation"] in ("bilinear", "bicubic") else "bicubic",
                "mean": tc["mean"] if pretrained else None, "std": tc["std"] if pretrained else None}
    return {"image_size": cfg.data.image_size, "crop_fraction": 1.0, "resample": "bicubic", "mean": None, "std": None}


def build_dataset(cfg: Config, prep: dict[str, Any] | None = None) -> Dataset:
    prep = prep or model_preprocessing(cfg)
    ds = load_dataset(cfg.data.dataset, data_dir=cfg.data.data_dir, image_size=prep["image_size"],
                      classes=cfg.data.classes, max_pixels=cfg.data.max_pixels, workers=cfg.data.workers,
                      progress=cfg.train.progress, crop_fraction=prep["crop_fraction"], resample=prep["resample"])
    for line in ds.skipped[:20]:
        log.warning("skipped %s", line)
    if len(ds.skipped) > 20:
        log.warning("skipped %d more unreadable files", len(ds.skipped) - 20)
    return ds


def resolve_config(cfg: Config, ds: Dataset, splits: Splits, seed: int) -> dict[str, Any]:
    """The flat config with every recipe value filled in (validated again as a Config)."""
    flat = cfg.flat()
    flat["image_size"] = model_preprocessing(cfg)["image_size"] or flat["image_size"]
    flat = recipes.resolve(flat, dataset_family(cfg.data.dataset), len(splits.train), ds.image_size)
    flat["seed"], flat["seeds"] = seed, 1
    from_flat(flat)  # type and range checks on the resolved values
    return flat


def build_model(hp: dict, ds: Dataset, mean: list[float], std: list[float]):
    """The ImageClassifier and its ``arch`` record; timm backbones get their pretrained weights and statistics."""
    from imgclf.models.io import build_classifier

    timm_model = hp["model"].startswith("timm:")
    prep = model_preprocessing(from_flat(hp)) if timm_model else {}
    arch = {"model": hp["model"], "num_classes": len(ds.classes), "net_channels": 3 if timm_model else ds.channels,
            "width": hp.get("width"), "dropout": hp.get("dropout"), "mean": prep.get("mean") or mean,
            "std": prep.get("std") or std, "input_size": hp["image_size"]}
    if not timm_model:
        return build_classifier(arch), arch
    from imgclf.models import ImageClassifier, create_model

    net = create_model(hp["model"], num_classes=len(ds.classes), in_channels=3, dropout=hp.get("dropout"),
                       pretrained=hp["pretrained"] and hp["transfer"] != "scratch",
                       weights=hp["weights"] if hp["transfer"] != "scratch" else None)
    return ImageClassifier(net, arch["mean"], arch["std"], arch["input_size"], 3), arch


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> list[float] | None:
    """'balanced': n / (K * count) per class, as scikit-learn; classes absent from training get weight 0."""
    if mode != "balanced":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.divide(len(labels), num_classes * counts, out=np.zeros_like(counts), where=counts > 0)
    return weights.tolist()


def build_trainer(hp: dict, run_dir: Path, n_train: int, steps_per_epoch: int):
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from imgclf.training.callbacks import EpochLog

    has_val = hp["val_fraction"] > 0
    monitor = ("val_loss" if hp["early_stop"] == "val_loss" else "val_acc") if has_val else None
    mode = "min" if monitor == "val_loss" else "max"
    callbacks = [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                 save_last=monitor is None, save_top_k=1, enable_version_counter=False),
                 EpochLog(run_dir / "metrics.csv", n_train, total_epochs=hp["epochs"],
                          verbose=bool(hp.get("progress")) and not _interactive(hp))]  # a line per epoch in logs
    if monitor is not None:  # Lightning >= 2.6 writes save_last only when the best improves; resume needs the latest
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1,
                                         enable_version_counter=False))
    if hp["early_stop"] != "none" and has_val:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=hp["patience"]))
    if hp.get("ema"):
        from imgclf.training.callbacks import EMA

        callbacks.append(EMA(hp["ema_decay"]))
    if _interactive(hp):
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=False))
    gpu = _accelerator(hp["accelerator"]) == "gpu"
    strategy = hp["strategy"]
    if strategy in ("auto", "ddp") and hp["devices"] * hp["num_nodes"] > 1:
        # parameters are frozen and unfrozen during training (whitening bias, fine-tuning's head-first epochs),
        # so DDP must expect parameters without gradients
        strategy = "ddp_find_unused_parameters_true"
    return L.Trainer(max_epochs=hp["epochs"], accelerator="gpu" if gpu else "cpu", devices=hp["devices"],
                     num_nodes=hp["num_nodes"], strategy=strategy,
                     precision="bf16-mixed" if gpu else "32-true", logger=False, callbacks=callbacks,
                     enable_progress_bar=_interactive(hp), enable_model_summary=False, num_sanity_val_steps=0,
                     use_distributed_sampler=False, log_every_n_steps=max(1, min(50, steps_per_epoch)),
                     default_root_dir=run_dir)


def _accelerator(name: str) -> str:
    return "gpu" if name == "gpu" or (name == "auto" and torch.cuda.is_available()) else "cpu"


def _interactive(hp: dict) -> bool:
    import sys

    return bool(hp.get("progress")) and sys.stdout.isatty()


# one run ------------------------------------------------------------------------------------------------------------

def _run_info(hp: dict, ds: Dataset, splits: Splits) -> dict:
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "status": "running",
            "seed": hp["seed"], "config": hp, "environment": environment(),
            "dataset": {"spec": ds.name, "source": ds.source, "classes": ds.classes, "orig_classes": ds.orig_classes,
                        "image_size": ds.image_size, "channels": ds.channels, "skipped": ds.skipped,
                        "n_train": len(splits.train), "n_val": 0 if splits.val is None else len(splits.val),
                        "n_test": len(splits.test)}}


def train_one(cfg: Config, ds: Dataset, run_dir: Path, seed: int, resume: bool = False) -> dict:
    """Train one seed into ``run_dir`` (continuing from its last checkpoint if ``resume``) and evaluate it."""
    import lightning as L

    from imgclf.data.module import ImageDataModule
    from imgclf.evaluation.evaluate import evaluate_run
    from imgclf.models.io import save_model
    from imgclf.training.module import ClassifierModule

    if resume:
        hp = {**read_yaml(run_dir / "config.yaml"), **_resume_overrides(cfg)}
        save_config(from_flat(hp), run_dir / "config.yaml")  # the run folder records the new epoch count
        splits = splits_from_ids(ds, read_json(run_dir / "split.json"))
        info = {**read_json(run_dir / "run.json"), "config": hp}
    else:
        splits = make_splits(ds, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.split_seed)
        hp = resolve_config(cfg, ds, splits, seed)
        info = _run_info(hp, ds, splits)
        save_config(from_flat(hp), run_dir / "config.yaml")
        write_json(run_dir / "split.json", splits.ids())
        write_json(run_dir / "run.json", info)
    L.seed_everything(seed, workers=False, verbose=False)
    augment = Augment(flip=hp["flip"], translate=hp["translate"], cutout=hp["cutout"])
    datamodule = ImageDataModule(splits, hp["batch_size"], augment, seed)
    model, arch = build_model(hp, ds, datamodule.mean, datamodule.std)
    if hasattr(model.net, "init_from_data") and not resume:
        sample = splits.train.images[np.random.default_rng(seed).permutation(len(splits.train))[:5000]]
        model.net.init_from_data(model.normalize(torch.from_numpy(np.ascontiguousarray(sample))))
    meta = {"classes": ds.classes, "orig_classes": ds.orig_classes, "dataset": hp["dataset"],
            "preprocess": _preprocess_spec(hp, ds), "tta": hp["tta"], "flip": hp["flip"], "transfer": hp["transfer"],
            "run": run_dir.name}
    if _cached_probe(hp):
        return _train_linear_probe(hp, ds, splits, model, arch, meta, info, run_dir, seed, resume)
    steps = datamodule.steps_per_epoch(hp["devices"] * hp["num_nodes"])  # per process: the schedule's clock
    weights = class_weights(splits.train.labels, len(ds.classes), hp["class_weight"])
    module = ClassifierModule(model, hp, weights, steps, len(ds.classes))
    trainer = build_trainer(hp, run_dir, len(splits.train), steps)
    last = run_dir / "checkpoints" / "last.ckpt"
    start = time.perf_counter()
    try:
        fit_module = torch.compile(module) if hp["compile"] else module
        trainer.fit(fit_module, datamodule=datamodule, ckpt_path=str(last) if resume and last.is_file() else None)
    except BaseException:
        info["status"] = "interrupted"
        write_json(run_dir / "run.json", info)
        raise
    elapsed = time.perf_counter() - start + (info.get("train_seconds") or 0.0 if resume else 0.0)
    if trainer.interrupted:
        info.update(status="interrupted", train_seconds=elapsed)
        write_json(run_dir / "run.json", info)
        raise ImgclfError(f"training interrupted; continue with: imgclf train --resume {run_dir}")
    if trainer.global_rank != 0:
        return {}
    best = _load_best(trainer, module, run_dir) if not hp["ema"] else _val_score(trainer)
    save_model(run_dir / "model.pt", module.model, arch, meta)
    info.update(status="finished", train_seconds=round(elapsed, 2), best_val_acc=best,
                epochs_done=trainer.current_epoch, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_json(run_dir / "run.json", info)
    return evaluate_run(run_dir, test_pool=splits.test)


def _cached_probe(hp: dict) -> bool:
    """A linear probe without pixel augmentation trains its head on cached features."""
    return (hp["transfer"] == "linear-probe" and hp["feature_cache"] != "off" and hp["translate"] == 0
            and hp["cutout"] == 0 and hp["mixup"] == 0 and hp["cutmix"] == 0 and hp["devices"] == 1)


def _train_linear_probe(hp, ds, splits, model, arch, meta, info, run_dir, seed, resume) -> dict:
    """Features once (cached), then the head alone trained on them with the same Lightning loop."""
    import lightning as L

    from imgclf.data.module import ImageDataModule
    from imgclf.evaluation.evaluate import evaluate_run
    from imgclf.models.io import save_model
    from imgclf.training import features
    from imgclf.training.module import ClassifierModule

    start = time.perf_counter()
    feats = features.split_features(model, hp, splits, run_dir, progress=hp["progress"])
    extract_seconds = time.perf_counter() - start
    fsplits = features.feature_splits(feats, splits)
    head = features.head_of(model)
    datamodule = ImageDataModule(fsplits, hp["batch_size"], Augment(), seed)
    steps = datamodule.steps_per_epoch(hp["devices"] * hp["num_nodes"])  # per process: the schedule's clock
    weights = class_weights(fsplits.train.labels, len(ds.classes), hp["class_weight"])
    module = ClassifierModule(head, {**hp, "transfer": "scratch"}, weights, steps, len(ds.classes))
    trainer = build_trainer(hp, run_dir, len(fsplits.train), steps)
    L.seed_everything(seed, workers=False, verbose=False)
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume and last.is_file() else None)
    best = _load_best(trainer, module, run_dir) if not hp["ema"] else _val_score(trainer)
    elapsed = time.perf_counter() - start
    save_model(run_dir / "model.pt", model, arch, meta)
    info.update(status="finished", train_seconds=round(elapsed, 2), best_val_acc=best,
                epochs_done=trainer.current_epoch, feature_seconds=round(extract_seconds, 2),
                feature_images_per_s=round(sum(len(v) for v in feats.values()) / max(extract_seconds, 1e-9), 1),
                finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_json(run_dir / "run.json", info)
    probs = features.test_probs(head, feats, tta=bool(hp["tta"]))
    return evaluate_run(run_dir, test_pool=splits.test, probs=probs)


def _val_score(trainer) -> float | None:
    value = trainer.callback_metrics.get("val_acc")
    return None if value is None else round(float(value), 6)


def _resume_overrides(cfg: Config) -> dict:
    """Keys a resumed run may change: more epochs, and how it runs (threads, devices, progress)."""
    flat, defaults = cfg.flat(), Config().flat()
    allowed = ("epochs", "threads", "accelerator", "devices", "num_nodes", "strategy", "progress")
    return {k: flat[k] for k in allowed if flat[k] != defaults[k]}


def _load_best(trainer, module, run_dir: Path) -> float | None:
    """Load the best checkpoint's weights into the module; returns its validation score."""
    ckpt_cb = trainer.checkpoint_callback
    path = Path(ckpt_cb.best_model_path) if ckpt_cb and ckpt_cb.best_model_path else None
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    score = ckpt_cb.best_model_score
    return None if score is None else round(float(score), 6)


def _preprocess_spec(hp: dict, ds: Dataset) -> dict:
    from imgclf.data.images import PreprocessSpec

    # built-in datasets are stored at their own size; new images are brought to that size, then the model
    # resizes to its input size, exactly as the training data was fed
    files = dataset_family(hp["dataset"]) in ("folder", "csv")
    prep = model_preprocessing(from_flat(hp)) if files else {"crop_fraction": 1.0, "resample": "bicubic"}
    return PreprocessSpec(size=ds.image_size, channels=ds.channels, max_pixels=hp["max_pixels"],
                          crop_fraction=prep["crop_fraction"], resample=prep["resample"]).to_dict()


# entry point ------------------------------------------------------------------------------------------------------

def train(config: str | Path | None = None, *, resume: str | Path | None = None, **overrides: Any) -> TrainResult:
    """Train a classifier; keys are the same as the CLI options and the YAML config.

    Args:
        config: optional YAML file; ``overrides`` are applied on top of it.
        resume: a run folder (or name under ``runs_dir``) to continue from its last checkpoint.
        **overrides: any config key, e.g. ``dataset="cifar10", model="cnn3", epochs=5, seeds=3``.

    Returns:
        TrainResult with the run folder and its test metrics.
    """
    _quiet_lightning()
    cfg = load_config(config, overrides)
    check_names(cfg)
    set_threads(threads_per_process(cfg.train.threads, cfg.train.devices, _accelerator(cfg.train.accelerator)))
    if resume is not None:
        return _resume(resume, cfg, overrides)
    ds = build_dataset(cfg)
    default_name = f"{slug(cfg.data.dataset)}-{cfg.model.model or 'default'}"
    if is_writer():
        run_dir = new_run_dir(cfg.train.runs_dir, cfg.train.name, default_name, cfg.train.overwrite)
    else:  # another DDP process: it trains alongside rank 0 and writes only into a scratch folder
        run_dir = _scratch() / "run"
        run_dir.mkdir()
    if cfg.train.seeds == 1:
        return TrainResult(run_dir, train_one(cfg, ds, run_dir, cfg.train.seed))
    seeds = [cfg.train.seed + i for i in range(cfg.train.seeds)]
    names = [f"seed-{s}" for s in seeds]
    write_json(run_dir / "group.json", {"members": names, "config": cfg.flat(), "status": "running",
                                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return TrainResult(run_dir, _train_group(cfg, ds, run_dir, seeds, resume=False))


def _train_group(cfg: Config, ds: Dataset, run_dir: Path, seeds: list[int], resume: bool) -> dict:
    from imgclf.evaluation.evaluate import summarize_group

    results = []
    for seed in seeds:
        member = run_dir / f"seed-{seed}"
        done = (member / "run.json").is_file() and read_json(member / "run.json").get("status") == "finished" \
            and read_yaml(member / "config.yaml")["epochs"] >= (cfg.train.epochs or 0)  # --epochs N trains further
        if resume and done:
            results.append(read_json(member / "metrics.json"))
            continue
        started = (member / "run.json").is_file()
        member.mkdir(exist_ok=True)
        log.info("seed %d -> %s", seed, member)
        results.append(train_one(cfg, ds, member, seed, resume=resume and started))
    group = read_json(run_dir / "group.json")
    group["status"] = "finished"
    write_json(run_dir / "group.json", group)
    return summarize_group(run_dir, results)


def _scratch() -> Path:
    """A temporary folder removed when the process exits."""
    import atexit
    import shutil

    path = Path(tempfile.mkdtemp(prefix="imgclf-rank-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _resume(resume: str | Path, cfg: Config, overrides: dict) -> TrainResult:
    run_dir = find_run(resume, cfg.train.runs_dir)
    if not is_writer():  # another DDP process: read a copy, so that only rank 0 writes into the run
        import shutil

        run_dir = Path(shutil.copytree(run_dir, _scratch() / run_dir.name))
    first = members(run_dir)[0] if (run_dir / "group.json").is_file() else run_dir
    saved = read_yaml(first / "config.yaml") if (first / "config.yaml").is_file() else \
        read_json(run_dir / "group.json")["config"]
    may_change = {"epochs", "threads", "accelerator", "devices", "num_nodes", "strategy", "progress", "runs_dir",
                  "data_dir"}
    extra = {k for k, v in overrides.items()
             if k not in may_change and from_flat({k: v}).flat()[k.replace("-", "_")] != saved.get(k.replace("-", "_"))}
    if extra:
        raise ImgclfError(f"--resume continues a run with its own config; cannot change: {', '.join(sorted(extra))}")
    base = load_config(overrides={k: v for k, v in saved.items()
                                  if k in Config().flat() and k not in ("seeds",)})
    base = base.replace(**{k: v for k, v in overrides.items() if k != "runs_dir"})
    ds = build_dataset(base)
    if (run_dir / "group.json").is_file():
        group = read_json(run_dir / "group.json")
        if group.get("status") == "finished" and "epochs" not in overrides:
            raise ImgclfError(f"{run_dir} already finished; pass --epochs N to train its seeds further")
        seeds = [int(m.split("-")[-1]) for m in group["members"]]
        return TrainResult(run_dir, _train_group(base, ds, run_dir, seeds, resume=True))
    info = read_json(run_dir / "run.json")
    if info.get("status") == "finished" and "epochs" not in overrides:
        raise ImgclfError(f"{run_dir} already finished; pass --epochs N (more than {info.get('epochs_done')}) "
                          "to train it further")
    return TrainResult(run_dir, train_one(base, ds, run_dir, int(info["seed"]), resume=True))
