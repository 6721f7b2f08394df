"""timm backbones as registry entries (``timm:NAME``)."""

from __future__ import annotations

from torch import nn

from imgclf.errors import ImgclfError, unknown


def create_timm_model(name: str, num_classes: int, in_channels: int = 3, dropout: float | None = None,
                      **_: object) -> nn.Module:
    """A timm model with its classifier head replaced to fit ``num_classes`` (random init)."""
    import timm

    if not timm.is_model(name):
        raise unknown("timm model", name, timm.list_models())
    kwargs = {"drop_rate": dropout} if dropout is not None else {}
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ImgclfError(f"timm model {name!r} could not be built: {exc}") from None
