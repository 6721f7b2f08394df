"""Grad-CAM and saliency: the layer choice, the ViT token grid, and that Grad-CAM finds the informative patch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgclf.cli import main
from imgclf.errors import ImgclfError
from imgclf.evaluation import explain as ex
from imgclf.models.classifier import ImageClassifier

S = 32  # px, side of the synthetic images
P = 8  # px, side of the coloured squares
COLOURS = {"red": (250, 40, 40), "blue": (40, 40, 250)}  # the class signal
DISTRACTOR = (40, 250, 40)  # a green square in every image, in another quadrant


def _square(img: np.ndarray, quadrant: int, colour, rng, side: int, size: int) -> None:
    half = size // 2
    r0, c0 = divmod(quadrant, 2)
    r, c = r0 * half + rng.integers(1, half - side), c0 * half + rng.integers(1, half - side)
    img[:, r : r + side, c : c + side] = np.array(colour, dtype=np.uint8)[:, None, None]


def make_patch_images(n: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images with a red (class 0) or blue (class 1) square in one random quadrant, a green one elsewhere."""
    x = rng.integers(0, 60, (n, 3, S, S)).astype(np.uint8)
    y = rng.integers(0, 2, n)
    quadrant = np.zeros(n, dtype=int)
    for i in range(n):
        q, other = rng.permutation(4)[:2]
        quadrant[i] = q
        _square(x[i], int(q), list(COLOURS.values())[y[i]], rng, P, S)
        _square(x[i], int(other), DISTRACTOR, rng, P, S)
    return x, y, quadrant


@pytest.fixture(scope="module")
def patch_model(tmp_path_factory):
    """resnet-fast (width 0.25) trained for 3 epochs on 384 patch images, saved as a model.pt (a few seconds)."""
    from imgclf.models.io import build_classifier, save_model

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y, _ = make_patch_images(384, rng)
    arch = {"model": "resnet-fast", "num_classes": 2, "net_channels": 3, "width": 0.25, "dropout": 0.0,
            "mean": [0.2] * 3, "std": [0.3] * 3, "input_size": S}
    model = build_classifier(arch)
    model.net.init_from_data(model.normalize(torch.from_numpy(x)))
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(3):
        model.train()
        for idx in np.array_split(rng.permutation(len(y)), len(y) // 64):
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    path = tmp_path_factory.mktemp("explain") / "model.pt"
    meta = {"classes": list(COLOURS), "orig_classes": None, "dataset": "synthetic", "tta": False, "flip": True,
            "preprocess": {"size": S, "channels": 3, "crop_fraction": 1.0, "resample": "bicubic",
                           "max_pixels": 40_000_000, "extra": {}}, "run": "patches"}
    save_model(path, model, arch, meta)
    return model, path


def _peak_quadrant(cam: np.ndarray, size: int) -> int:
    up = torch.nn.functional.interpolate(torch.from_numpy(cam)[None, None], size=(size, size), mode="bilinear")
    r, c = np.unravel_index(int(up.argmax()), (size, size))
    return int(r // (size // 2) * 2 + c // (size // 2))


def test_gradcam_peak_lies_in_the_informative_patch(patch_model):
    model, _ = patch_model
    x, y, quadrant = make_patch_images(24, np.random.default_rng(1))
    with torch.no_grad():
        assert (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean() >= 0.9
    layer = ex.find_cam_layer(model)
    assert layer.module is model.net.groups[-1] and layer.layout == "NCHW"
    hits = 0
    for i in range(len(y)):
        cam, probs = ex.grad_cam(model, torch.from_numpy(x[i : i + 1]), layer, int(y[i]))
        assert cam.max() == pytest.approx(1.0) and probs.sum() == pytest.approx(1.0, abs=1e-5)
        hits += _peak_quadrant(cam, S) == quadrant[i]
    assert hits >= 21, f"Grad-CAM peak in the informative quadrant for only {hits}/24 images"


def _photo(path: Path, width: int, height: int, quadrant: int, colour, exif_orientation: int | None = None) -> None:
    """A non-square photo: noise, the class square in ``quadrant`` of the centre crop, a decoy square left of it."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 60, (3, height, width)).astype(np.uint8)
    side, left = min(width, height), (width - min(width, height)) // 2
    crop = a[:, :, left : left + side].copy()
    _square(crop, quadrant, colour, rng, side // 4, side)
    _square(crop, (quadrant + 1) % 4, DISTRACTOR, rng, side // 4, side)
    a[:, :, left : left + side] = crop
    a[:, 2 : 2 + side // 4, 1 : 1 + min(left - 2, side // 4)] = np.array(colour, dtype=np.uint8)[:, None, None]
    img = Image.fromarray(a.transpose(1, 2, 0))
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(path, exif=exif, quality=95)
    else:
        img.save(path)


def test_explainer_maps_the_heat_onto_the_original_image_through_the_centre_crop(patch_model, tmp_path):
    _, model_file = patch_model
    photo = tmp_path / "wide.png"
    _photo(photo, 144, 96, quadrant=3, colour=COLOURS["blue"])  # crop box: x 24..120; the decoy at x < 24
    explainer = ex.Explainer(model_file)
    result = explainer.explain(photo)
    assert result.label == "blue" and result.target == "blue"
    heat = result.heatmap
    assert heat.shape == (96, 144) and result.overlay_image.size == (144, 96)
    assert heat[:, :24].max() == 0 and heat[:, 120:].max() == 0  # the model never saw the sides
    r, c = np.unravel_index(int(heat.argmax()), heat.shape)
    assert r >= 48 and 72 <= c < 120  # bottom-right quadrant of the crop box
    other = explainer.explain(photo, target="red")
    assert other.target == "red" and other.label == "blue" and other.target_probability < 0.5


def test_explainer_follows_exif_orientation_and_saliency_has_the_input_resolution(patch_model, tmp_path):
    _, model_file = patch_model
    photo = tmp_path / "rotated.jpg"
    _photo(photo, 120, 80, quadrant=0, colour=COLOURS["red"], exif_orientation=6)  # shown 80 wide, 120 tall
    explainer = ex.Explainer(model_file)
    result = explainer.explain(photo, method="saliency")
    assert result.heatmap.shape == (120, 80)
    sal, probs = explainer.heatmap(explainer.predictor.preprocess(photo), "saliency")
    assert sal.shape == (S, S) and sal.min() >= 0 and sal.max() <= 1 and probs.shape == (2,)
    with pytest.raises(ImgclfError, match="unknown class 'green'"):
        explainer.explain(photo, target="green")
    with pytest.raises(ImgclfError, match="unknown explain method"):
        explainer.heatmap(np.zeros((3, S, S), np.uint8), "lime")


def test_to_original_places_the_map_in_the_crop_box_only():
    heat = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    out, box = ex.to_original(heat, 60, 40)
    assert box == (10, 0, 50, 40) and out.shape == (40, 60)
    assert out[:, :10].max() == 0 and out[:, 50:].max() == 0
    r, c = np.unravel_index(int(out.argmax()), out.shape)
    assert r < 20 and 10 <= c < 30
    assert ex.crop_box(100, 50, crop_fraction=0.8) == (30.0, 5.0, 40.0)


def test_tokens_to_grid_drops_prefix_tokens_and_keeps_raster_order():
    tokens = torch.arange(1 + 12, dtype=torch.float32).view(1, 13, 1).expand(1, 13, 2)  # token i holds i
    grid = ex.tokens_to_grid(tokens, prefix_tokens=1, grid=(3, 4))
    assert grid.shape == (1, 2, 3, 4)
    assert grid[0, 0].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert ex.tokens_to_grid(tokens[:, :10], prefix_tokens=1).shape == (1, 2, 3, 3)  # square grid inferred


def test_gradcam_on_a_tiny_vit_reads_the_last_block_and_reshapes_tokens_to_the_patch_grid():
    """The ViT path: the last block's input norm, class token dropped, 16 patch tokens -> 4x4 (no download)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=2,
                            depth=2)
    model = ImageClassifier(net, [0.5] * 3, [0.25] * 3, 32, 3).eval()
    layer = ex.find_cam_layer(model)
    assert layer.layout == "tokens" and layer.prefix_tokens == 1 and layer.grid == (4, 4)
    assert layer.module is net.blocks[-1].norm1
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 32, 32), dtype=np.uint8))
    cam, probs = ex.grad_cam(model, x, layer, target=1)
    assert cam.shape == (4, 4) and np.isfinite(cam).all() and cam.max() == pytest.approx(1.0)
    assert probs.shape == (2,)


def test_timm_cnn_uses_the_map_before_global_pooling():
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    model = ImageClassifier(net, [0.5] * 3, [0.25] * 3, 64, 3).eval()
    layer = ex.find_cam_layer(model)
    assert layer.name.startswith("layer4") and layer.layout == "NCHW"
    cam, _ = ex.grad_cam(model, torch.zeros(1, 3, 64, 64, dtype=torch.uint8) + 100, layer)
    assert cam.shape == (2, 2)


@pytest.fixture
def keep_threads():
    """``imgclf explain`` sets torch's thread count for its process; restore it for the tests that follow."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_explain_writes_overlays_and_reports_bad_files(patch_model, tmp_path, capsys, keep_threads):
    _, model_file = patch_model
    good = tmp_path / "good.png"
    _photo(good, 64, 48, quadrant=1, colour=COLOURS["red"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "cams"
    code = main(["explain", str(model_file), str(good), str(broken), "--out", str(out), "--method", "saliency"])
    assert code == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "good.png: red" in captured.out
    with Image.open(out / "good_saliency.png") as im:
        assert im.size == (64, 48)
    assert main(["explain", str(model_file), str(good), "--out", str(out), "--target", "blue"]) == 0
    assert (out / "good_gradcam_blue.png").is_file()
    assert main(["explain", str(model_file), str(good), "--method", "lime"]) == 2
    assert "unknown explain method" in capsys.readouterr().err
    assert torch.get_num_threads() == 1  # the CLI's default: one image is too little work to split
