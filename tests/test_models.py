"""imgclf.models: every registry model at tiny sizes, resnet-fast's whitening, timm entries, model files."""

from __future__ import annotations

import pytest
import torch

from imgclf.errors import ImgclfError
from imgclf.models import ImageClassifier, count_flops, count_params, create_model, list_models, tta_logits
from imgclf.models.io import MODEL_FORMAT, build_classifier, load_model, save_model

MODELS = list_models()


def test_registry_lists_the_builtin_nets():
    assert {"lenet5", "cnn3", "vgg11-bn", "resnet-fast"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("classes", [2, 10])
def test_output_shape_and_finite(name, channels, size, classes):
    torch.manual_seed(0)
    net = create_model(name, num_classes=classes, in_channels=channels, width=0.25 if name != "lenet5" else None)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, channels, size, size))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_trains_one_step_and_counts(name):
    torch.manual_seed(0)
    net = create_model(name, num_classes=3, in_channels=3)
    assert count_params(net) > 0
    assert count_flops(net, (3, 32, 32)) > 0
    assert net.training  # count_flops puts the net back in the mode it found
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01)
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_width_scales_parameters():
    assert count_params(create_model("cnn3", 10, width=0.5)) < count_params(create_model("cnn3", 10, width=1.0))


def test_resnet_fast_whitening_from_data():
    torch.manual_seed(0)
    net = create_model("resnet-fast", num_classes=4, in_channels=3, width=0.25)
    # correlated images: smooth noise, so neighbouring pixels and channels are far from white
    x = torch.nn.functional.avg_pool2d(torch.randn(64, 1, 20, 20), 3, 1) * 3 + 0.3 * torch.randn(64, 3, 18, 18)
    before = net.whiten.weight.clone()
    net.init_from_data(x)
    assert not torch.equal(before, net.whiten.weight)
    assert torch.isfinite(net.whiten.weight).all()
    with torch.no_grad():
        out = torch.nn.functional.conv2d(x, net.whiten.weight)  # the stem without its bias
    half = out[:, : out.shape[1] // 2].permute(0, 2, 3, 1).reshape(-1, out.shape[1] // 2)
    second_moment = half.T @ half / len(half)
    off_diagonal = second_moment - torch.diag(second_moment.diag())
    assert off_diagonal.abs().max() < 0.05  # whitened: the patch directions are uncorrelated ...
    assert (second_moment.diag() > 0.5).all() and (second_moment.diag() < 1.05).all()  # ... with about unit scale
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    raw = patches.T @ patches / len(patches)
    assert (raw - torch.diag(raw.diag())).abs().max() > 0.5  # ... which the raw patches are not
    assert torch.isfinite(net(x)).all()


def test_unknown_model_lists_close_matches():
    with pytest.raises(ImgclfError) as err:
        create_model("resnet-fats", num_classes=2)
    msg = str(err.value)
    assert "unknown model 'resnet-fats'" in msg and "did you mean 'resnet-fast'" in msg and "timm:NAME" in msg


def test_unknown_timm_model():
    with pytest.raises(ImgclfError, match="unknown timm model 'resnet1888'; did you mean"):
        create_model("timm:resnet1888", num_classes=2)


def test_timm_resnet18_head_replaced():
    net = create_model("timm:resnet18", num_classes=7, in_channels=1)
    assert net.get_classifier().out_features == 7
    assert net.conv1.in_channels == 1
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 32)).shape == (1, 7)


def _arch(model="cnn3", channels=3, size=16):
    return {"model": model, "num_classes": 3, "net_channels": channels, "width": 0.25, "dropout": None,
            "mean": [0.5] * channels, "std": [0.25] * channels, "input_size": size}


def test_classifier_normalises_and_resizes():
    torch.manual_seed(0)
    clf = build_classifier(_arch(size=16)).eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    normed = clf.normalize(x)
    assert normed.shape == (2, 3, 16, 16)
    mid = clf.normalize(torch.full((1, 3, 16, 16), 127.5))
    torch.testing.assert_close(mid, torch.zeros_like(mid))  # (127.5 - 0.5 * 255) / (0.25 * 255)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), clf(x.float()))  # uint8 and float pixels are the same input
    gray = ImageClassifier(create_model("cnn3", 3, in_channels=3, width=0.25), [0.5], [0.25], 16, 3).eval()
    assert gray.normalize(torch.zeros(1, 1, 16, 16)).shape == (1, 3, 16, 16)  # grey repeated for RGB nets


def test_tta_levels():
    torch.manual_seed(0)
    clf = build_classifier(_arch()).eval()
    x = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        plain = tta_logits(clf, x, 0)
        torch.testing.assert_close(plain, clf(x))
        mirror = tta_logits(clf, x, 1)
        torch.testing.assert_close(mirror, 0.5 * (clf(x) + clf(x.flip(-1))))
        torch.testing.assert_close(tta_logits(clf, x.flip(-1), 1), mirror)  # mirror-invariant
        assert tta_logits(clf, x, 2).shape == plain.shape


@pytest.mark.parametrize("model", ["cnn3", "resnet-fast", "lenet5"])
def test_save_load_round_trip(tmp_path, model):
    torch.manual_seed(0)
    clf = build_classifier(_arch(model, channels=1 if model == "lenet5" else 3)).eval()
    channels = clf.net_channels
    with torch.no_grad():  # move the batch-norm statistics away from their defaults
        clf.train()
        clf(torch.randint(0, 256, (8, channels, 16, 16)))
        clf.eval()
    path = tmp_path / "model.pt"
    meta = {"classes": ["a", "b", "c"], "preprocess": {"size": 16}}
    save_model(path, clf, _arch(model, channels), meta)
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == MODEL_FORMAT and blob["meta"]["classes"] == ["a", "b", "c"]
    loaded, loaded_meta = load_model(path)
    assert not loaded.training and loaded_meta["classes"] == ["a", "b", "c"] and loaded_meta["arch"]["model"] == model
    x = torch.randint(0, 256, (4, channels, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), clf(x), rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp"))


def test_load_model_errors(tmp_path):
    with pytest.raises(ImgclfError, match="model file not found"):
        load_model(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    with pytest.raises(ImgclfError, match="not a readable imgclf model") as err:
        load_model(junk)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ImgclfError, match="not an imgclf model file"):
        load_model(other)
