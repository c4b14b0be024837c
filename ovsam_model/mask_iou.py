"""Intersection over union of boolean masks: the one rule that the evaluation, the GPU check and
the demo use. Numpy only, so that a process without torch (the ROS node's side) can use it."""
from __future__ import annotations

import numpy as np


def mask_iou(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU per instance of boolean masks [N, H, W]."""
    inter = (predicted & target).sum(axis=(1, 2))
    union = (predicted | target).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mask_pair_iou(predicted: np.ndarray, target: np.ndarray) -> float:
    """IoU of two boolean masks [H, W] (`mask_iou` of one instance): 1.0 when both are empty."""
    return float(mask_iou(predicted[None], target[None])[0])
