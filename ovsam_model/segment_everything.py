"""The pieces of "segment everything": a grid of point prompts, a mask-quality measure, and
de-duplication of overlapping masks.

The released OV-SAM has no automatic mode (its users asked for one in HarborYuan/ovsam #13, #24,
#54). SAM's recipe transfers: prompt every cell of a regular grid with one foreground point, keep
confident and stable masks, and drop near-duplicates (neighbouring grid points usually find the
same object). OV-SAM's decoder has no IoU head, so confidence here is the mean foreground
probability inside the mask instead of SAM's predicted IoU.
"""
from __future__ import annotations

import numpy as np
import torch


def grid_points(points_per_side: int, height: int, width: int) -> np.ndarray:
    """Centres of a points_per_side x points_per_side grid of cells over an image, as (N, 2)
    (x, y) pixel coordinates, row by row. Cell centres keep every point half a cell away from
    the border, where masks are least reliable."""
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be at least 1, got {points_per_side}")
    offsets = (np.arange(points_per_side, dtype=np.float64) + 0.5) / points_per_side
    ys, xs = np.meshgrid(offsets * height, offsets * width, indexing="ij")
    return np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1)


def mask_scores(mask_logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Mean foreground probability inside each mask (logits > threshold), 0 for an empty mask.

    mask_logits: (N, H, W) -> (N,)."""
    probabilities = torch.sigmoid(mask_logits.float())
    inside = (mask_logits > threshold).float()
    area = inside.flatten(1).sum(dim=1)
    total = (probabilities * inside).flatten(1).sum(dim=1)
    return torch.where(area > 0, total / area.clamp(min=1.0), torch.zeros_like(total))


def stability_scores(mask_logits: torch.Tensor, offset: float = 1.0, threshold: float = 0.0) -> torch.Tensor:
    """How little each mask changes when its binarising threshold moves by +-offset (in logits):
    area(logits > threshold + offset) / area(logits > threshold - offset), in [0, 1]; a mask that
    is empty at the low threshold counts as perfectly stable (1), as in SAM.

    mask_logits: (N, H, W) -> (N,)."""
    logits = mask_logits.float().flatten(1)
    strict = (logits > threshold + offset).sum(dim=1, dtype=torch.float64)
    loose = (logits > threshold - offset).sum(dim=1, dtype=torch.float64)
    ratio = torch.where(loose > 0, strict / loose.clamp(min=1.0), torch.ones_like(loose))
    return ratio.float()


def mask_iou_matrix(masks_a: torch.Tensor, masks_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of binary masks, (A, H, W) x (B, H, W) -> (A, B); two empty
    masks have IoU 0 (nothing to de-duplicate)."""
    if masks_a.shape[1:] != masks_b.shape[1:]:
        raise ValueError(f"mask sizes differ: {tuple(masks_a.shape[1:])} vs {tuple(masks_b.shape[1:])}")
    flat_a = masks_a.flatten(1).float()
    flat_b = masks_b.flatten(1).float()
    intersection = flat_a @ flat_b.T
    union = flat_a.sum(dim=1)[:, None] + flat_b.sum(dim=1)[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1.0), torch.zeros_like(union))


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression on masks: visit masks by descending score and keep one
    unless its mask IoU with an already kept mask exceeds iou_threshold.

    masks: (N, H, W) bool, scores: (N,) -> indices of the kept masks, best first (int64)."""
    if masks.shape[0] != scores.shape[0]:
        raise ValueError(f"{masks.shape[0]} masks but {scores.shape[0]} scores")
    if masks.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64)
    order = torch.argsort(scores.to(masks.device), descending=True, stable=True)
    # The IoU matrix is the heavy part and runs where the masks are; the greedy walk is cheap
    # and sequential, so it runs on the CPU.
    iou = mask_iou_matrix(masks[order], masks[order]).cpu()
    order = order.cpu()
    suppressed = torch.zeros(order.shape[0], dtype=torch.bool)
    kept: list[int] = []
    for rank in range(order.shape[0]):
        if suppressed[rank]:
            continue
        kept.append(rank)
        suppressed |= iou[rank] > iou_threshold
    return order[torch.tensor(kept, dtype=torch.int64)]
