"""Feature pyramid over the four CLIP levels, used only to pool region features for recognition.

Semantics of mmdet's FPN with one output per input level and no extra levels: 1x1 laterals,
top-down sum with nearest upsampling to the finer level's exact size, 3x3 output convolutions.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .conv_unit import ConvUnit


class FPN(nn.Module):
    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvUnit(channels, out_channels, 1) for channels in in_channels)
        self.fpn_convs = nn.ModuleList(ConvUnit(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, levels: Sequence[Tensor], first: int = 0) -> tuple[Tensor, ...]:
        """The pyramid's outputs for levels `first` and up, from the inputs of those levels.

        `first` > 0 skips the finer levels: the top-down sum never carries anything upwards, so the
        coarser outputs are exactly those of the whole pyramid.
        """
        expected = len(self.lateral_convs) - first
        if len(levels) != expected:
            raise ValueError(f"expected {expected} feature levels (from level {first}), got {len(levels)}")
        laterals = [conv(level) for conv, level in zip(self.lateral_convs[first:], levels)]
        for index in range(len(laterals) - 1, 0, -1):
            coarser = F.interpolate(laterals[index], size=laterals[index - 1].shape[-2:], mode="nearest")
            laterals[index - 1] = laterals[index - 1] + coarser
        return tuple(conv(lateral) for conv, lateral in zip(self.fpn_convs[first:], laterals))
