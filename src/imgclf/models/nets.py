"""From-scratch networks: LeNet-5, a compact 3-block CNN, a small VGG-11 with batch norm, and resnet-fast.

``resnet-fast`` follows the CIFAR-10 speed-record nets (Page's ResNet-9 and Keller Jordan's airbench94):
a 2x2 patch-whitening stem initialised from the data, three conv groups (conv, max-pool, BN, GELU, then a
residual conv, BN, GELU) at widths 64/256/256 x ``width``, global max-pool and a scaled linear head. On
32x32 inputs it costs about 0.24 GFLOPs a forward pass at width 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgclf.models.registry import register_model


def _scaled(channels: int, width: float) -> int:
    return max(8, int(round(channels * width / 8)) * 8)


@register_model("lenet5", "LeNet-5: 2 conv (6, 16 filters, 5x5) + 3 fully connected layers (120, 84, classes)")
def lenet5(num_classes: int, in_channels: int = 1, width: float = 1.0, dropout: float = 0.0) -> nn.Module:
    c1, c2 = _scaled(6, width) if width != 1 else 6, _scaled(16, width) if width != 1 else 16
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(5), nn.Flatten(),
        nn.Linear(c2 * 25, 120), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(120, 84), nn.ReLU(inplace=True),
        nn.Linear(84, num_classes),
    )


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register_model("cnn3", "three conv blocks (32/64/128, two 3x3 convs each, BN, max-pool, dropout) + GAP + dense head")
def cnn3(num_classes: int, in_channels: int = 3, width: float = 1.0, dropout: float = 0.3) -> nn.Module:
    w = [_scaled(c, width) for c in (32, 64, 128)]
    layers, cin = [], in_channels
    for c in w:
        layers += [*_conv_bn(cin, c), *_conv_bn(c, c), nn.MaxPool2d(2), nn.Dropout(dropout)]
        cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(cin, 128), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(128, num_classes))


@register_model("vgg11-bn", "VGG-11 with batch norm, for small images (64-128-256x2-512x4, GAP head)")
def vgg11_bn(num_classes: int, in_channels: int = 3, width: float = 0.5, dropout: float = 0.0) -> nn.Module:
    plan = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]
    layers, cin = [], in_channels
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            c = _scaled(item, width)
            layers += _conv_bn(cin, c)
            cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(cin, num_classes))


class _FrozenScaleBN(nn.BatchNorm2d):
    """Batch norm with a fixed scale of 1 and a learnable shift, as in the speed-record nets."""

    def __init__(self, channels: int, momentum: float = 0.4):
        super().__init__(channels, eps=1e-12, momentum=momentum)
        self.weight.requires_grad_(False)


class _Conv(nn.Conv2d):
    """3x3 same-padding conv initialised with a partial identity (dirac), an implicit residual at the start."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1, bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        nn.init.dirac_(w[: min(w.size(0), w.size(1))])


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.norm1 = _Conv(cin, cout), _FrozenScaleBN(cout)
        self.conv2, self.norm2 = _Conv(cout, cout), _FrozenScaleBN(cout)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))
        return x + F.gelu(self.norm2(self.conv2(x)))


class ResNetFast(nn.Module):
    """Patch-whitening stem + three residual conv groups + max-pool + scaled linear head."""

    norm_bias_lr_scale = 64.0  # BN shifts learn 64x faster under SGD (their scale is frozen)

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        w1, w2, w3 = (_scaled(c, width) for c in (64, 256, 256))
        self.whiten = nn.Conv2d(in_channels, 2 * in_channels * 4, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.groups = nn.Sequential(ConvGroup(self.whiten.out_channels, w1), ConvGroup(w1, w2), ConvGroup(w2, w3))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.head_scale = 1 / 9

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to the ZCA-like whitening of the 2x2 patches of ``x`` (normalised float images)."""
        c, (kh, kw) = x.shape[1], self.whiten.kernel_size
        patches = x.float().unfold(2, kh, 1).unfold(3, kw, 1).transpose(1, 3).reshape(-1, c * kh * kw)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        scale = torch.sqrt(eigenvalues.flip(0) + eps).view(-1, 1, 1, 1)
        vectors = eigenvectors.T.reshape(-1, c, kh, kw).flip(0) / scale
        self.whiten.weight.copy_(torch.cat([vectors, -vectors]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        x = torch.amax(x, dim=(2, 3))
        return self.head(self.dropout(x)) * self.head_scale


@register_model("resnet-fast", "compact residual net after the CIFAR-10 speed records (whitening stem, 64/256/256)")
def resnet_fast(num_classes: int, in_channels: int = 3, width: float = 1.0, dropout: float = 0.0) -> nn.Module:
    return ResNetFast(num_classes, in_channels, width, dropout)
