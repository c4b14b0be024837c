"""Tight boxes and innermost pixels of boolean masks. numpy and OpenCV, no torch, so that the ROS
node's side can use it."""
from __future__ import annotations

import cv2
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


def innermost_pixel(mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> tuple[int, int] | None:
    """(x, y), the pixel index of the mask pixel farthest from the background (the first in row order
    of equals); None for an empty mask. A point prompt there is the paper's click on an object, in
    SAM's convention (a pixel index). `box`, the mask's tight box, limits the work to that window:
    everything outside it is background anyway."""
    x0, y0 = 0, 0
    if box is not None:
        x0, y0, x1, y1 = box
        mask = mask[y0:y1, x0:x1]
    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return x0 + int(x), y0 + int(y)
