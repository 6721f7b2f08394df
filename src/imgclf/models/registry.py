"""The one model registry: from-scratch nets register a builder under a name; timm backbones are ``timm:NAME``.

Examples:
    >>> from imgclf.models import create_model, list_models
    >>> net = create_model("cnn3", num_classes=10, in_channels=3)
    >>> "resnet-fast" in list_models()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from imgclf.errors import unknown


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    default_size: int = 32  # px, input side used for FLOP counts and when the data does not fix it


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, description: str, default_size: int = 32):
    """Decorator: register ``builder(num_classes, in_channels, width=..., dropout=...) -> nn.Module``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(name, builder, description, default_size)
        return builder

    return wrap


def list_models() -> list[str]:
    """Names of the registered from-scratch models (timm backbones are used as ``timm:NAME``)."""
    return list(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise unknown("model", name, [*_REGISTRY, "timm:NAME"])
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build a network by registry name or ``timm:NAME``; ``kwargs`` with value None are left to the builder."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name.startswith("timm:"):
        from imgclf.models.timm_backbone import create_timm_model

        return create_timm_model(name[5:], num_classes, in_channels, **kwargs)
    return get_entry(name).builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
