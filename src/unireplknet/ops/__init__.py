"""Depthwise convolution: the one place every depthwise conv of the model is created.

Every depthwise convolution in :mod:`unireplknet.model` is built by :func:`create_depthwise_conv2d`,
so a faster implementation slots in everywhere at once and the model's equivalence tests cover it.
The module it returns *is* an :class:`torch.nn.Conv2d` (same ``weight``/``bias`` keys, same
attributes such as ``padding``), so official checkpoints load unchanged and code that inspects
convolutions keeps working; only its ``forward`` goes through :func:`depthwise_conv2d`, which picks
the implementation.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DepthwiseConv2d", "create_depthwise_conv2d", "depthwise_conv2d"]


def depthwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """Stride-1 depthwise 2-D convolution: ``conv2d(x, weight, bias, padding, dilation, groups=C)``."""
    return F.conv2d(x, weight, bias, 1, padding, dilation, x.shape[1])


class DepthwiseConv2d(nn.Conv2d):
    """A stride-1 depthwise :class:`~torch.nn.Conv2d` whose forward dispatches to the fastest implementation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.padding[0], self.dilation[0])


def create_depthwise_conv2d(
    channels: int,
    kernel_size: int,
    dilation: int = 1,
    bias: bool = False,
) -> DepthwiseConv2d:
    """A depthwise ``kernel_size``×``kernel_size`` conv over ``channels`` with 'same' padding for odd kernels."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"depthwise kernel size must be a positive odd number, got {kernel_size}")
    padding = (kernel_size - 1) * dilation // 2
    return DepthwiseConv2d(
        channels, channels, kernel_size, stride=1, padding=padding, dilation=dilation, groups=channels, bias=bias
    )
