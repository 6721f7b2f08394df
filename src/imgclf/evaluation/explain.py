"""What did the network look at? Grad-CAM and vanilla-gradient saliency, overlaid on the image as the user gave it.

    imgclf explain runs/c10 cat.jpg dog.png --method gradcam --out cams/
    imgclf explain runs/c10 cat.jpg --target dog        # why not "dog"?

Grad-CAM (Selvaraju et al., 2017) weights the activation maps of the last convolutional stage by the mean gradient
of the target class score and keeps the positive part. The stage is found automatically:
1. vision transformers (timm ``blocks`` + ``patch_embed``): the input norm of the last block, whose patch tokens
   (class and register tokens dropped) are reshaped to the patch grid; the last block's own output would give zero
   gradients on patch tokens when the head reads only the class token;
2. timm CNNs: the module whose output ``forward_features`` returns (the map before global pooling);
3. registry nets: the last module producing a 4-D activation with more than one pixel (``groups[-1]`` of
   resnet-fast).
Vanilla saliency (Simonyan et al., 2014) is the largest absolute input gradient over the colour channels.
Heat maps are mapped back through the run's centre crop onto the original, EXIF-rotated image; the part of the image
the model never saw is dimmed.

Examples:
    >>> ex = Explainer("runs/c10")  # doctest: +SKIP
    >>> result = ex.explain("cat.jpg", method="gradcam")  # doctest: +SKIP
    >>> result.label, result.heatmap.shape  # doctest: +SKIP
    ('cat', (480, 640))
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from imgclf.errors import ImgclfError, unknown

METHODS = ("gradcam", "saliency")


@dataclass
class CamLayer:
    """Where Grad-CAM reads activations: a module of ``model.net`` and how its output is laid out."""

    module: nn.Module
    name: str  # dotted name inside model.net
    layout: str  # "NCHW", "NHWC" or "tokens" (B, N, C)
    prefix_tokens: int = 0  # class / register tokens before the patch tokens (ViTs)
    grid: tuple[int, int] | None = None  # patch grid (rows, columns) of a ViT


@dataclass
class Explanation:
    input: str
    method: str
    label: str  # predicted class (plain model, no test-time augmentation)
    probability: float
    target: str  # the class explained
    target_probability: float
    heatmap: np.ndarray  # float32 (H, W) in [0, 1] at the original image's resolution
    overlay_image: Image.Image | None = None  # the heat map blended onto the original (RGB)
    output: Path | None = None  # where the overlay PNG was written

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "method": self.method, "label": self.label,
                "probability": round(self.probability, 6), "target": self.target,
                "target_probability": round(self.target_probability, 6),
                "output": str(self.output) if self.output else None}


# choosing the layer ---------------------------------------------------------------------------------------------------

def _is_vit(net: nn.Module) -> bool:
    return hasattr(net, "blocks") and hasattr(net, "patch_embed") and hasattr(net, "num_prefix_tokens")


def _trace(net: nn.Module, x: torch.Tensor, run) -> tuple[list[tuple[str, nn.Module, torch.Tensor, int]], Any]:
    """Run ``run(x)`` recording every submodule's tensor output (and its in-place version) in completion order."""
    records: list[tuple[str, nn.Module, torch.Tensor, int]] = []
    handles = []
    for name, module in net.named_modules():
        if name:
            handles.append(module.register_forward_hook(
                lambda m, _i, out, name=name: records.append((name, m, out, out._version))
                if torch.is_tensor(out) else None))
    try:
        with torch.no_grad():
            result = run(x)
    finally:
        for h in handles:
            h.remove()
    return records, result


def _producer(records, tensor: torch.Tensor) -> tuple[str, nn.Module] | None:
    """The deepest module that returned ``tensor`` in its final state (not changed in place afterwards)."""
    found = [(name, module) for name, module, out, version in records if out is tensor and version == tensor._version]
    if not found:
        return None
    depth = max(name.count(".") for name, _ in found)
    return next((name, module) for name, module in found if name.count(".") == depth)


def find_cam_layer(model: nn.Module) -> CamLayer:
    """The activation Grad-CAM should read for an ImageClassifier (see the module docstring for the rules)."""
    net = model.net
    if _is_vit(net):
        i = len(net.blocks) - 1
        block = net.blocks[i]
        module, name = (block.norm1, f"blocks.{i}.norm1") if hasattr(block, "norm1") else (block, f"blocks.{i}")
        grid = getattr(net.patch_embed, "grid_size", None)
        return CamLayer(module, name, "tokens", int(net.num_prefix_tokens), tuple(grid) if grid else None)
    was_training = net.training
    net.eval()
    x = torch.zeros(1, model.net_channels, model.input_size, model.input_size)
    timm_like = hasattr(net, "forward_features") and hasattr(net, "forward_head")
    records, out = _trace(net, x, net.forward_features if timm_like else net)
    net.train(was_training)
    layout = "NHWC" if getattr(net, "output_fmt", "NCHW") == "NHWC" else "NCHW"
    if timm_like and torch.is_tensor(out) and out.ndim == 4 and min(_spatial(out, layout)) > 1:
        found = _producer(records, out)
        if found:
            return CamLayer(found[1], found[0], layout)
    maps = [r[2] for r in records if r[2].ndim == 4 and min(_spatial(r[2], layout)) > 1]
    if not maps:
        raise ImgclfError(f"Grad-CAM: {type(net).__name__} has no 4-D activation map with more than one pixel "
                          f"at {model.input_size} px; use --method saliency")
    name, module = _producer(records, maps[-1])
    return CamLayer(module, name, layout)


def _spatial(t: torch.Tensor, layout: str) -> tuple[int, int]:
    return (t.shape[1], t.shape[2]) if layout == "NHWC" else (t.shape[-2], t.shape[-1])


def tokens_to_grid(tokens: torch.Tensor, prefix_tokens: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """ViT tokens (B, N, C) to a (B, C, rows, cols) map: class/register tokens dropped, patches in raster order."""
    patches = tokens[:, prefix_tokens:]
    n = patches.shape[1]
    if grid is None or grid[0] * grid[1] != n:
        side = math.isqrt(n)
        if side * side != n:
            raise ImgclfError(f"Grad-CAM: {n} patch tokens do not form a square grid")
        grid = (side, side)
    return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], grid[0], grid[1])


def _to_nchw(t: torch.Tensor, layer: CamLayer) -> torch.Tensor:
    if layer.layout == "tokens":
        return tokens_to_grid(t, layer.prefix_tokens, layer.grid)
    return t.permute(0, 3, 1, 2) if layer.layout == "NHWC" else t


# the maps -------------------------------------------------------------------------------------------------------------

def cam_from(activation: torch.Tensor, gradient: torch.Tensor) -> np.ndarray:
    """Grad-CAM of one image: ReLU(sum_c mean_xy(dS/dA_c) * A_c), scaled to [0, 1]; (B, C, h, w) -> (h, w)."""
    weights = gradient.float().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation.float()).sum(dim=1))[0]
    top = cam.max()
    return (cam / top if top > 0 else cam).numpy().astype(np.float32)


def grad_cam(model: nn.Module, x: torch.Tensor, layer: CamLayer, target: int | None = None):
    """(Grad-CAM map (h, w) on the layer's grid, class probabilities (K,)) of one uint8 image (1, C, H, W)."""
    captured: dict[str, torch.Tensor] = {}
    handle = layer.module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    try:
        with torch.enable_grad():
            logits = model(x.float().requires_grad_(True))
            cls = int(logits[0].argmax()) if target is None else target
            (grad,) = torch.autograd.grad(logits[0, cls], captured["a"])
    finally:
        handle.remove()
    cam = cam_from(_to_nchw(captured["a"].detach(), layer), _to_nchw(grad, layer))
    return cam, torch.softmax(logits.detach()[0].float(), dim=0).numpy()


def saliency(model: nn.Module, x: torch.Tensor, target: int | None = None, percentile: float = 99.0):
    """(|d score / d pixel| max over channels (H, W), scaled so the ``percentile`` is 1, probabilities (K,))."""
    with torch.enable_grad():
        xf = x.float().requires_grad_(True)
        logits = model(xf)
        cls = int(logits[0].argmax()) if target is None else target
        (grad,) = torch.autograd.grad(logits[0, cls], xf)
    sal = grad.abs().amax(dim=1)[0].numpy()
    top = np.percentile(sal, percentile)
    sal = np.clip(sal / top, 0, 1) if top > 0 else sal
    return sal.astype(np.float32), torch.softmax(logits.detach()[0].float(), dim=0).numpy()


# back onto the original image -----------------------------------------------------------------------------------------

def crop_box(width: int, height: int, crop_fraction: float = 1.0) -> tuple[float, float, float]:
    """(left, top, side) of the centred square of the original that the model sees (as ``resize_center_crop``)."""
    side = min(width, height) * crop_fraction
    return (width - side) / 2, (height - side) / 2, side


def to_original(heat: np.ndarray, width: int, height: int, crop_fraction: float = 1.0) -> tuple[np.ndarray, tuple]:
    """A heat map of the model's input upsampled (bilinear) into the crop box of a ``width`` x ``height`` image.

    Returns:
        (float32 (height, width) map, zero outside the box; the box as integer (left, top, right, bottom)).
    """
    left, top, side = crop_box(width, height, crop_fraction)
    box = (round(left), round(top), round(left + side), round(top + side))
    bw, bh = max(1, box[2] - box[0]), max(1, box[3] - box[1])
    up = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None],
                                         size=(bh, bw), mode="bilinear", align_corners=False)[0, 0].numpy()
    out = np.zeros((height, width), dtype=np.float32)
    x0, y0 = max(box[0], 0), max(box[1], 0)
    out[y0 : y0 + bh, x0 : x0 + bw] = np.clip(up, 0, 1)[: height - y0, : width - x0]
    return out, box


def overlay(image: Image.Image, heat: np.ndarray, box: tuple | None = None, alpha: float = 0.6,
            cmap: str = "jet") -> Image.Image:
    """The heat map coloured (``cmap``) and blended onto the RGB image, more opaque where hotter; outside ``box``
    (what the model did not see) the image is dimmed."""
    from matplotlib import colormaps

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    color = colormaps[cmap](heat)[..., :3].astype(np.float32)
    a = alpha * heat[..., None] ** 0.7
    out = rgb * (1 - a) + color * a
    if box is not None:
        seen = np.zeros(heat.shape, dtype=bool)
        seen[max(box[1], 0) : box[3], max(box[0], 0) : box[2]] = True
        out[~seen] *= 0.4
    return Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))


# the user-facing API --------------------------------------------------------------------------------------------------

class Explainer:
    """Heat maps for a run (best seed of a group) or model file, with the run's own preprocessing.

    Args:
        source: run folder, run name under ``runs_dir`` or ``model.pt``.
        max_pixels: override the run's decompression-bomb limit.
        threads: if given, set torch's (process-wide) CPU thread count; one image is too little work to share
            across cores, and on a busy machine waiting for a second core costs more than it gains (1 is the CLI's
            default).
    """

    def __init__(self, source: str | Path, runs_dir: str | Path = "runs", max_pixels: int | None = None,
                 device: str = "cpu", threads: int | None = None):
        from imgclf.infer.predict import Predictor

        if threads:
            torch.set_num_threads(threads)
        self.predictor = Predictor(source, tta=False, max_pixels=max_pixels, device=device, runs_dir=runs_dir)
        self.model = self.predictor.model.eval()
        self.classes = self.predictor.classes
        self.layer = find_cam_layer(self.model)

    def class_index(self, target: str | int | None) -> int | None:
        """The index of a class name (or index); None stays None (= explain the predicted class)."""
        if target is None or isinstance(target, int):
            return target
        if target not in self.classes:
            raise unknown("class", target, self.classes)
        return self.classes.index(target)

    def heatmap(self, array: np.ndarray, method: str = "gradcam", target: str | int | None = None):
        """(heat map on the model-input grid, probabilities) of one preprocessed uint8 (C, H, W) array."""
        if method not in METHODS:
            raise unknown("explain method", method, METHODS)
        x = torch.from_numpy(np.ascontiguousarray(array))[None].to(self.predictor.device)
        if method == "gradcam":
            return grad_cam(self.model, x, self.layer, self.class_index(target))
        return saliency(self.model, x, self.class_index(target))

    def explain(self, item: str | Path | np.ndarray | Image.Image, method: str = "gradcam",
                target: str | int | None = None, name: str | None = None) -> Explanation:
        """Explain one image (file path, array or PIL image); the heat map has the original's resolution."""
        from imgclf.data.images import open_image, to_mode

        name = name or (str(item) if isinstance(item, str | Path) else "<array>")
        array = self.predictor.preprocess(item, name=name)
        if isinstance(item, str | Path):
            original = open_image(item, self.predictor.spec.max_pixels, name=name)
        else:
            original = item if isinstance(item, Image.Image) else Image.fromarray(np.asarray(item))
        original = to_mode(original, 3)
        heat, probs = self.heatmap(array, method, target)
        full, box = to_original(heat, original.width, original.height, self.predictor.spec.crop_fraction)
        pred = int(probs.argmax())
        t = pred if target is None else self.class_index(target)
        return Explanation(name, method, self.classes[pred], float(probs[pred]), self.classes[t], float(probs[t]),
                           full, overlay(original, full, box))


def _out_name(path: Path, method: str, target: str | None, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem) or "image"
    suffix = f"_{method}" + (f"_{re.sub(r'[^A-Za-z0-9._-]+', '-', target)}" if target else "")
    name, n = f"{stem}{suffix}.png", 2
    while name in used:
        name, n = f"{stem}-{n}{suffix}.png", n + 1
    used.add(name)
    return name


def explain(source: str | Path, images: Iterable[str | Path], method: str = "gradcam", target: str | None = None,
            out: str | Path = "cams", runs_dir: str | Path = "runs", max_pixels: int | None = None,
            threads: int | None = None) -> Iterator[dict[str, Any]]:
    """Write one overlay PNG per image into ``out``; yields a dict per image (``error`` for a bad file, and go on).

    Examples:
        >>> for r in explain("runs/c10", ["cat.jpg"], out="cams"):  # doctest: +SKIP
        ...     print(r["label"], r["output"])
        cat cams/cat_gradcam.png
    """
    from imgclf.data.images import ImageError

    if method not in METHODS:
        raise unknown("explain method", method, METHODS)
    explainer = Explainer(source, runs_dir=runs_dir, max_pixels=max_pixels, threads=threads)
    explainer.class_index(target)  # an unknown class fails before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for item in images:
        try:
            ex = explainer.explain(item, method, target)
        except ImageError as exc:
            yield {"input": str(item), "error": str(exc)}
            continue
        ex.output = out / _out_name(Path(item), method, target, used)
        ex.overlay_image.save(ex.output, compress_level=3)
        yield ex.to_dict()
