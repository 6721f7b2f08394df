"""imgclf.config: defaults, YAML then overrides, validation errors that name the key, round trips."""

from __future__ import annotations

import pytest

from imgclf.config import Config, from_flat, load_config, parse_overrides, read_yaml, save_config
from imgclf.errors import ImgclfError


def test_defaults():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.data.dataset == "cifar10"
    assert cfg.data.val_fraction == 0.1
    assert cfg.train.seeds == 1 and cfg.train.seed == 0
    assert cfg.train.epochs is None and cfg.model.model is None  # left to the dataset's recipe
    assert cfg.optim.class_weight == "none"
    assert cfg.epochs is None and cfg.dataset == "cifar10"  # flat read access
    with pytest.raises(AttributeError):
        _ = cfg.no_such_key


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dataset: mnist\nepochs: 3\nlr: 0.05\nflip: false\n")
    cfg = load_config(path, {"epochs": 7, "model": "cnn3"})
    assert cfg.data.dataset == "mnist"  # from YAML
    assert cfg.optim.lr == 0.05  # from YAML
    assert cfg.data.flip is False
    assert cfg.train.epochs == 7  # the override wins over YAML
    assert cfg.model.model == "cnn3"
    assert cfg.data.batch_size is None  # untouched: default


def test_dashes_in_keys_are_accepted():
    assert from_flat({"image-size": 24}).data.image_size == 24


@pytest.mark.parametrize("source", ["override", "yaml"])
def test_unknown_key_names_it_and_a_close_match(tmp_path, source):
    if source == "yaml":
        path = tmp_path / "c.yaml"
        path.write_text("epochz: 3\n")
        call = lambda: load_config(path)  # noqa: E731
    else:
        call = lambda: load_config(overrides={"epochz": 3})  # noqa: E731
    with pytest.raises(ImgclfError) as err:
        call()
    msg = str(err.value)
    assert "'epochz'" in msg and "did you mean 'epochs'" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("epochs", "abc", "int"), ("epochs", 2.5, "int"), ("lr", "fast", "float"), ("flip", "maybe", "true/false"),
    ("epochs", True, "int"), ("dataset", 3, "str"),
])
def test_wrong_type_names_the_key(key, value, expected):
    with pytest.raises(ImgclfError) as err:
        from_flat({key: value})
    msg = str(err.value)
    assert f"'{key}'" in msg and expected in msg and "\n" not in msg


@pytest.mark.parametrize(("text", "value"), [("true", True), ("Yes", True), ("on", True), ("1", True),
                                             ("false", False), ("NO", False), ("off", False), ("0", False)])
def test_bool_from_strings(text, value):
    assert from_flat({"flip": text}).data.flip is value
    assert from_flat({"overwrite": text}).train.overwrite is value


def test_none_from_strings_and_numbers_from_strings():
    cfg = from_flat({"epochs": "none", "batch_size": "null", "lr": "0.1", "seeds": "3", "width": "1"})
    assert cfg.train.epochs is None and cfg.data.batch_size is None
    assert cfg.optim.lr == 0.1 and cfg.train.seeds == 3
    assert cfg.model.width == 1.0 and isinstance(cfg.model.width, float)
    assert from_flat({"flip": 1}).data.flip is True  # 0/1 from YAML


def test_non_nullable_key_cannot_be_none():
    with pytest.raises(ImgclfError, match="'seed' cannot be empty"):
        from_flat({"seed": None})


def test_choices_are_checked():
    assert from_flat({"optimizer": "adamw"}).optim.optimizer == "adamw"
    with pytest.raises(ImgclfError) as err:
        from_flat({"optimizer": "lion"})
    assert "'optimizer'" in str(err.value) and "sgd, adamw" in str(err.value)


@pytest.mark.parametrize(("key", "value"), [
    ("val_fraction", 1.0), ("val_fraction", -0.1), ("test_fraction", 0.0), ("seeds", 0), ("epochs", 0),
    ("batch_size", 0), ("image_size", 4), ("image_size", 4096), ("lr", 0.0), ("width", -1.0),
    ("label_smoothing", 1.0), ("dropout", 1.0), ("patience", 0),
])
def test_range_checks(key, value):
    with pytest.raises(ImgclfError) as err:
        from_flat({key: value})
    assert f"'{key}' is out of range" in str(err.value)


def test_range_edges_are_accepted():
    cfg = from_flat({"val_fraction": 0.0, "image_size": 8, "epochs": 1, "dropout": 0.0})
    assert cfg.data.val_fraction == 0.0 and cfg.data.image_size == 8


def test_save_load_round_trip(tmp_path):
    cfg = from_flat({"dataset": "folder:/x y/photos", "epochs": 4, "lr": 0.01, "flip": False, "classes": None,
                     "seeds": 2, "early_stop": "val_acc", "width": 0.5})
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    text = path.read_text()
    assert text.startswith("data:") and "\ntrain:" in text  # saved grouped by concern


def test_nested_group_sections_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: mnist\n  batch_size: 32\noptim:\n  lr: 0.2\ntrain:\n  epochs: 2\nseed: 5\n")
    cfg = load_config(path)
    assert (cfg.data.dataset, cfg.data.batch_size, cfg.optim.lr, cfg.train.epochs, cfg.train.seed) == \
        ("mnist", 32, 0.2, 2, 5)
    path.write_text("data:\n  epochz: 2\n")  # unknown keys inside a section are caught too
    with pytest.raises(ImgclfError, match="epochz"):
        load_config(path)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ImgclfError, match="config file not found"):
        read_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(ImgclfError, match="not valid YAML") as err:
        read_yaml(bad)
    assert "\n" not in str(err.value)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ImgclfError, match="mapping"):
        read_yaml(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


def test_replace_validates():
    cfg = Config().replace(epochs=5)
    assert cfg.train.epochs == 5
    with pytest.raises(ImgclfError):
        cfg.replace(epochs=-1)


def test_parse_overrides():
    assert parse_overrides(["epochs=3", "dataset=folder:a=b"]) == {"epochs": "3", "dataset": "folder:a=b"}
    with pytest.raises(ImgclfError, match="'epochs'"):
        parse_overrides(["epochs"])
