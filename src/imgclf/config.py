"""Typed run configuration: defaults, then a YAML file, then ``key=value`` overrides.

Keys are flat and unique across the concern groups below, and they are the same in the CLI (``--image-size``),
YAML (``image_size:``) and Python (``imgclf.train(image_size=...)``). ``None`` means "use the dataset's recipe"
(see ``imgclf.training.recipes``); the resolved config, with every value filled in, is saved in the run folder.

Examples:
    >>> cfg = load_config(overrides={"dataset": "mnist", "epochs": 3})
    >>> cfg.train.epochs, cfg.data.dataset
    (3, 'mnist')
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.errors import ImgclfError


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class DataConfig:
    dataset: str = _opt("cifar10", "cifar10 | cifar100 | mnist | fashion-mnist | folder:PATH | csv:FILE")
    data_dir: str | None = _opt(None, "where dataset files are looked for; then $IMGCLF_DATA, then ~/.cache/imgclf")
    classes: str | None = _opt(None, "label grouping: 'vehicles-vs-animals' (CIFAR-10) or a YAML file new: [old, ...]")
    image_size: int | None = _opt(None, "px, side of the square model input; default: the dataset's own size")
    val_fraction: float = _opt(0.1, "[0, 1), share of the training split held out for validation, stratified")
    test_fraction: float = _opt(0.2, "(0, 1), share carved as test split for folder/csv sets without test/")
    split_seed: int = _opt(0, "seed of the validation and test carving (kept fixed across --seeds)")
    batch_size: int | None = _opt(None, "images per optimisation step")
    flip: bool | None = _opt(None, "random horizontal flips (off by default for digits)")
    translate: int | None = _opt(None, "px, random translation (reflect-padded random crop); 0 = off")
    cutout: int | None = _opt(None, "px, side of a random square set to the mean; 0 = off")
    max_pixels: int = _opt(40_000_000, "images with more pixels are rejected (decompression-bomb guard)")
    workers: int = _opt(0, "processes that decode image files; 0 = one per core")


@dataclass(frozen=True)
class ModelConfig:
    model: str | None = _opt(None, "registry name (imgclf models) or timm:NAME")
    width: float | None = _opt(None, "> 0, channel-width multiplier of from-scratch nets")
    dropout: float | None = _opt(None, "[0, 1), dropout before the classifier")
    pretrained: bool = _opt(False, "start timm backbones from ImageNet weights (offline package or timm's download)")
    weights: str | None = _opt(None, "local .pth/.safetensors weights for the backbone (air-gapped machines)")
    transfer: str | None = _opt(None, "linear-probe | fine-tune | scratch; default: fine-tune when pretrained",
                                ("linear-probe", "fine-tune", "scratch"))
    freeze_epochs: int | None = _opt(None, ">= 0, fine-tune: epochs that train the head alone before unfreezing")
    backbone_lr_scale: float | None = _opt(None, "> 0, fine-tune: backbone lr = lr x this")
    layer_decay: float | None = _opt(None, "(0, 1], fine-tune: lr x this per layer below the top; 1 = off")
    feature_cache: str = _opt("auto", "auto | memory | disk | off: cache frozen-backbone features",
                              ("auto", "memory", "disk", "off"))


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str | None = _opt(None, "sgd (Nesterov) | adamw", ("sgd", "adamw"))
    lr: float | None = _opt(None, "> 0, peak learning rate (for the batch-mean loss)")
    momentum: float | None = _opt(None, "[0, 1), SGD momentum or AdamW beta1")
    weight_decay: float | None = _opt(None, ">= 0, weight decay (scaled by lr, as torch applies it)")
    schedule: str | None = _opt(None, "onecycle | cosine | constant", ("onecycle", "cosine", "constant"))
    warmup: float | None = _opt(None, "[0, 1), share of the steps spent warming the learning rate up")
    label_smoothing: float | None = _opt(None, "[0, 1), label smoothing of the cross-entropy")
    class_weight: str = _opt("none", "none | balanced (loss weights inverse to class frequency)", ("none", "balanced"))
    mixup: float = _opt(0.0, ">= 0, mixup Beta(alpha, alpha); 0 = off")
    cutmix: float = _opt(0.0, ">= 0, CutMix Beta(alpha, alpha); 0 = off (with mixup too: one of them per batch)")
    ema: bool = _opt(False, "keep an exponential moving average of the weights and evaluate/deploy it")
    ema_decay: float = _opt(0.999, "(0, 1), EMA decay per step")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = _opt(None, "passes over the training split")
    seed: int = _opt(0, "seed of initialisation, shuffling and augmentation")
    seeds: int = _opt(1, ">= 1, train this many runs (seed, seed+1, ...) and report mean ± std")
    early_stop: str = _opt("none", "none | val_loss | val_acc", ("none", "val_loss", "val_acc"))
    patience: int = _opt(5, "epochs without improvement before early stopping")
    tta: bool | None = _opt(None, "average predictions over flipped (and shifted) views at evaluation")
    name: str | None = _opt(None, "run folder name; default: DATASET-MODEL with a free number")
    runs_dir: str = _opt("runs", "folder that holds run folders")
    overwrite: bool = _opt(False, "replace an existing run folder of the same name")
    threads: int | None = _opt(None, "torch CPU threads; default: the number of cores")
    accelerator: str = _opt("auto", "auto | cpu | gpu", ("auto", "cpu", "gpu"))
    devices: int = _opt(1, "devices (processes) per node; > 1 trains with DDP")
    num_nodes: int = _opt(1, "machines taking part (torchrun / SLURM launch every process)")
    strategy: str = _opt("auto", "auto | ddp | ddp_spawn | ddp_notebook (Lightning's strategies)",
                         ("auto", "ddp", "ddp_spawn", "ddp_notebook"))
    compile: bool = _opt(False, "torch.compile the model (GPU: faster after a warm-up)")
    progress: bool = _opt(True, "show a progress bar")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def flat(self) -> dict[str, Any]:
        """All keys in one dict, as in YAML and on the command line."""
        return {f.name: getattr(getattr(self, g), f.name) for g, f in _fields()}

    def replace(self, **changes: Any) -> Config:
        """A copy with some flat keys changed (validated like overrides)."""
        return from_flat({**self.flat(), **changes})

    def __getattr__(self, key: str) -> Any:  # flat read access: cfg.epochs == cfg.train.epochs
        for g, f in _fields():
            if f.name == key:
                return getattr(object.__getattribute__(self, g), key)
        raise AttributeError(key)


GROUPS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}


def _fields() -> list[tuple[str, dataclasses.Field]]:
    return [(g, f) for g, cls in GROUPS.items() for f in dataclasses.fields(cls)]


def fields_info() -> list[tuple[str, type, Any, str, tuple[str, ...] | None]]:
    """(key, type, default, help, choices) of every key, for the CLI and docs."""
    hints = {g: typing.get_type_hints(cls) for g, cls in GROUPS.items()}
    return [(f.name, hints[g][f.name], f.default, f.metadata["help"], f.metadata["choices"]) for g, f in _fields()]


def _base_type(tp: Any) -> tuple[type, bool]:
    """(the non-None type, whether None is allowed) of a field annotation."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def coerce(key: str, value: Any, tp: Any, choices: tuple[str, ...] | None = None) -> Any:
    """Check (and for strings from the command line, convert) one value; errors name the key."""
    base, nullable = _base_type(tp)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and nullable):
        if nullable:
            return None
        raise ImgclfError(f"config key {key!r} cannot be empty; expected {base.__name__}")
    if isinstance(value, str) and base is not str:
        value = _parse_str(key, value, base)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if base is bool and isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        value = bool(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ImgclfError(f"config key {key!r} expects {base.__name__}, got {type(value).__name__} {value!r}")
    if choices and value not in choices:
        raise ImgclfError(f"config key {key!r} got {value!r}; accepted: {', '.join(choices)}")
    return value


def _parse_str(key: str, text: str, base: type) -> Any:
    if base is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ImgclfError(f"config key {key!r} expects true/false, got {text!r}")
    try:
        return base(text)
    except ValueError:
        raise ImgclfError(f"config key {key!r} expects {base.__name__}, got {text!r}") from None


def from_flat(values: dict[str, Any]) -> Config:
    """Build a Config from flat keys; unknown keys and wrong types raise ImgclfError naming the key."""
    from imgclf.errors import unknown

    info = {k: (tp, choices) for k, tp, _, _, choices in fields_info()}
    groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    owner = {f.name: g for g, f in _fields()}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        if key not in info:
            raise unknown("config key", raw_key, sorted(info))
        tp, choices = info[key]
        groups[owner[key]][key] = coerce(key, value, tp, choices)
    cfg = Config(**{g: GROUPS[g](**kw) for g, kw in groups.items()})
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: Config) -> None:
    checks = [
        ("val_fraction", 0 <= cfg.data.val_fraction < 1, "[0, 1)"),
        ("test_fraction", 0 < cfg.data.test_fraction < 1, "(0, 1)"),
        ("seeds", cfg.train.seeds >= 1, ">= 1"),
        ("epochs", cfg.train.epochs is None or cfg.train.epochs >= 1, ">= 1"),
        ("batch_size", cfg.data.batch_size is None or cfg.data.batch_size >= 1, ">= 1"),
        ("image_size", cfg.data.image_size is None or 8 <= cfg.data.image_size <= 1024, "8..1024"),
        ("lr", cfg.optim.lr is None or cfg.optim.lr > 0, "> 0"),
        ("width", cfg.model.width is None or cfg.model.width > 0, "> 0"),
        ("label_smoothing", cfg.optim.label_smoothing is None or 0 <= cfg.optim.label_smoothing < 1, "[0, 1)"),
        ("dropout", cfg.model.dropout is None or 0 <= cfg.model.dropout < 1, "[0, 1)"),
        ("patience", cfg.train.patience >= 1, ">= 1"),
        ("devices", cfg.train.devices >= 1, ">= 1"),
        ("num_nodes", cfg.train.num_nodes >= 1, ">= 1"),
        ("mixup", cfg.optim.mixup >= 0, ">= 0"),
        ("cutmix", cfg.optim.cutmix >= 0, ">= 0"),
        ("ema_decay", 0 < cfg.optim.ema_decay < 1, "(0, 1)"),
        ("freeze_epochs", cfg.model.freeze_epochs is None or cfg.model.freeze_epochs >= 0, ">= 0"),
        ("backbone_lr_scale", cfg.model.backbone_lr_scale is None or cfg.model.backbone_lr_scale > 0, "> 0"),
        ("layer_decay", cfg.model.layer_decay is None or 0 < cfg.model.layer_decay <= 1, "(0, 1]"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise ImgclfError(f"config key {key!r} is out of range; expected {expected}, got {cfg.flat()[key]!r}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into flat keys (nested group sections are flattened)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ImgclfError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ImgclfError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ImgclfError(f"config file {path} must hold a mapping of key: value")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in GROUPS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def parse_overrides(items: list[str]) -> dict[str, str]:
    """Turn ``["epochs=3", "lr=0.1"]`` into a dict; an item without '=' is an error naming it."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ImgclfError(f"expected key=value, got {item!r}")
        out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file at ``path``, then ``overrides``."""
    values: dict[str, Any] = read_yaml(path) if path else {}
    values.update(overrides or {})
    return from_flat(values)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the config as grouped YAML (readable back by ``load_config``)."""
    import yaml

    grouped = {g: dataclasses.asdict(getattr(cfg, g)) for g in GROUPS}
    Path(path).write_text(yaml.safe_dump(grouped, sort_keys=False))
