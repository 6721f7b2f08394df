"""The deployable model: input normalisation and resizing live inside it, so every consumer feeds raw pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ImageClassifier(nn.Module):
    """Wraps a network: takes (N, C, H, W) pixels in 0..255 (uint8 or float) and returns logits.

    Args:
        net: the network, fed normalised float images of side ``input_size`` with ``net_channels`` channels.
        mean, std: per-channel statistics in 0..1 units (computed on the training split).
        input_size: px, side the network expects; other sizes are resized (bilinear) on the fly.
        net_channels: grayscale inputs are repeated to 3 channels when the network wants 3.
    """

    def __init__(self, net: nn.Module, mean: list[float], std: list[float], input_size: int, net_channels: int):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)
        self.input_size = input_size
        self.net_channels = net_channels

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        if x.shape[1] != self.net_channels:
            x = x.expand(-1, self.net_channels, -1, -1)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size)
        return x.contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def tta_logits(model: nn.Module, x: torch.Tensor, level: int) -> torch.Tensor:
    """Logits averaged over views: 0 = none, 1 = + mirror, 2 = + mirror and one-pixel shifts (airbench)."""
    if level == 0:
        return model(x)
    logits = 0.5 * (model(x) + model(x.flip(-1)))
    if level == 1:
        return logits
    padded = F.pad(x.float(), (1, 1, 1, 1), mode="replicate")
    h, w = x.shape[-2:]
    shifted = [padded[..., 0:h, 0:w], padded[..., 2 : h + 2, 2 : w + 2]]
    shifted_logits = torch.stack([0.5 * (model(s) + model(s.flip(-1))) for s in shifted]).mean(0)
    return 0.5 * logits + 0.5 * shifted_logits
