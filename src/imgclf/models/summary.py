"""Parameter and FLOP counts of registry models."""

from __future__ import annotations

import torch
from torch import nn

from imgclf.models.registry import create_model, get_entry, list_models


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@torch.no_grad()
def count_flops(net: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass on one image (a multiply-add counts 2), by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, *input_shape))
    net.train(was_training)
    return int(counter.get_total_flops())


def model_table(num_classes: int = 10, in_channels: int = 3) -> list[dict]:
    """One row per registry model: name, parameters and FLOPs at its default input size, description."""
    rows = []
    for name in list_models():
        entry = get_entry(name)
        net = create_model(name, num_classes=num_classes, in_channels=in_channels)
        size = entry.default_size
        rows.append({"name": name, "params": count_params(net), "input": f"{in_channels}x{size}x{size}",
                     "gflops": count_flops(net, (in_channels, size, size)) / 1e9, "description": entry.description})
    return rows
