"""timm backbones as registry entries (``timm:NAME``): building, pretrained weights, head and preprocessing."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from imgclf.errors import ImgclfError, unknown


def _check_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        raise unknown("timm model", name, timm.list_models())


def create_timm_model(name: str, num_classes: int, in_channels: int = 3, dropout: float | None = None,
                      pretrained: bool = False, weights: str | Path | None = None, **_: object) -> nn.Module:
    """A timm model with its classifier head replaced to fit ``num_classes``.

    Args:
        pretrained: load ImageNet weights (an installed weights package first, else timm's download).
        weights: a local weights file instead (takes precedence over ``pretrained``).

    Examples:
        >>> net = create_timm_model("resnet18", num_classes=2)
        >>> net.get_classifier().out_features
        2
    """
    import timm

    from imgclf.models.pretrained import load_weights, packaged_path

    _check_name(name)
    kwargs = {"drop_rate": dropout} if dropout is not None else {}
    local = Path(weights) if weights else (packaged_path(name) if pretrained else None)
    try:
        if local is not None:
            # build with the original head so every tensor of the file has its place, then swap the head
            net = timm.create_model(name, pretrained=False, in_chans=in_channels, **kwargs)
            load_weights(net, local)
            net.reset_classifier(num_classes)
        else:
            net = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels,
                                    **kwargs)
    except ImgclfError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        how = "download its pretrained weights" if pretrained and local is None else "build it"
        raise ImgclfError(f"timm model {name!r}: could not {how} ({str(exc).splitlines()[0][:200]}); "
                          "offline, pass --weights FILE") from None
    return net


def timm_data_config(name: str) -> dict:
    """Input size, mean/std, interpolation and crop fraction from the model's pretrained config."""
    import timm

    from imgclf.models.pretrained import PACKAGED

    _check_name(name)
    cfg = timm.models.get_pretrained_cfg(name)
    cfg = cfg.to_dict() if cfg is not None else {}
    out = {"input_size": int(cfg.get("input_size", (3, 224, 224))[-1]),
           "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))), "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
           "interpolation": cfg.get("interpolation", "bicubic") or "bicubic",
           "crop_fraction": float(cfg.get("crop_pct", 0.875) or 0.875)}
    if name in PACKAGED:
        out["mean"], out["std"] = list(PACKAGED[name].mean), list(PACKAGED[name].std)
    return out
