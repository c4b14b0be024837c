"""A convolution with an optional ReLU, named like mmcv's ConvModule.

The released FPN and RoI-projection weights were saved from mmcv `ConvModule`s, whose convolution
sits at `.conv`; keeping that attribute name lets the files load without key rewriting.
"""
from __future__ import annotations

from torch import Tensor, nn


class ConvUnit(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        bias: bool = True,
        relu: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.activate = nn.ReLU(inplace=False) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.conv(x))
