"""From a predicted mask to a pooled region feature: mask box, pyramid level, RoIAlign.

The released model recognises a prompt from the box around its own predicted mask, pooled from
the FPN level that mmdet's SingleRoIExtractor would pick for a box of that size. Training pools the
boxes of many images at once (`image_index`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

from .foreground import foreground


def mask_logits_to_boxes(mask_logits: Tensor, scale: float = 1.0) -> Tensor:
    """Tight boxes (x1, y1, x2, y2) of the foreground of `mask_logits` ([N, 1, h, w] or [N, h, w]), times `scale`.

    As mmdet's mask2bbox: x2/y2 are one past the last foreground index; an empty mask gives an
    all-zero box.
    """
    if mask_logits.dim() == 4:
        mask_logits = mask_logits[:, 0]
    inside = foreground(mask_logits)
    columns = inside.any(dim=1)  # [N, w]
    rows = inside.any(dim=2)  # [N, h]
    boxes = mask_logits.new_zeros((mask_logits.shape[0], 4), dtype=torch.float32)
    if boxes.shape[0] == 0:
        return boxes
    width, height = columns.shape[1], rows.shape[1]
    x_index = torch.arange(width, device=mask_logits.device)
    y_index = torch.arange(height, device=mask_logits.device)
    x1 = torch.where(columns, x_index, width).amin(dim=1)
    x2 = torch.where(columns, x_index, -1).amax(dim=1) + 1
    y1 = torch.where(rows, y_index, height).amin(dim=1)
    y2 = torch.where(rows, y_index, -1).amax(dim=1) + 1
    found = columns.any(dim=1)
    stacked = torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)
    boxes[found] = stacked[found] * scale
    return boxes


def box_levels(boxes: Tensor, finest_scale: float, num_levels: int) -> Tensor:
    """mmdet's level rule: floor(log2(sqrt(area) / finest_scale + 1e-6)), clamped to the pyramid."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    levels = torch.floor(torch.log2(torch.sqrt(area) / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def pool_regions(
    pyramid: Sequence[Tensor | None],
    strides: Sequence[int],
    boxes: Tensor,
    output_size: int,
    finest_scale: float,
    image_index: Tensor | None = None,
) -> Tensor:
    """RoIAlign features [N, C, output_size, output_size] of boxes (input pixels).

    Each box is pooled from the level its size maps to (aligned=True, adaptive sampling, as mmcv's
    RoIAlign defaults), in image `image_index[i]` of the levels' batch (default: image 0). A level may
    be None when no box maps to it.
    """
    present = [features for features in pyramid if features is not None]
    if not present:
        raise ValueError("the pyramid has no levels")
    num_boxes = boxes.shape[0]
    channels = present[0].shape[1]
    pooled = present[0].new_zeros((num_boxes, channels, output_size, output_size))
    if num_boxes == 0:
        return pooled
    boxes = boxes.to(present[0].dtype)
    if image_index is None:
        image_index = boxes.new_zeros(num_boxes)
    levels = box_levels(boxes, finest_scale, len(pyramid))
    for level, (features, stride) in enumerate(zip(pyramid, strides)):
        selected = torch.nonzero(levels == level, as_tuple=False).flatten()
        if selected.numel() == 0:
            continue
        if features is None:
            raise ValueError(f"{selected.numel()} box(es) map to pyramid level {level}, which was not given")
        rois = torch.cat([image_index[selected, None].to(boxes.dtype), boxes[selected]], dim=1)
        pooled[selected] = roi_align(
            features,
            rois,
            output_size=(output_size, output_size),
            spatial_scale=1.0 / stride,
            sampling_ratio=0,
            aligned=True,
        )
    return pooled
