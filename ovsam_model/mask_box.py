"""Tight boxes of boolean masks. Numpy only, so that a process without torch (the ROS node's side)
can use it."""
from __future__ import annotations

import numpy as np


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Smallest box x0, y0, x1, y1 (exclusive ends) holding every True pixel; None if there is none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """[N, 4] float32 `tight_box` of each mask [N, H, W]; all zeros for an empty mask (as mmdet's
    mask2bbox, which OV-SAM pools its region from)."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        box = tight_box(mask)
        if box is not None:
            boxes[i] = box
    return boxes
