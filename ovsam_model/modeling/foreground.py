"""Which mask logits are foreground: the official rule, sigmoid(logit) > 0.5 in float32.

That is not `logit > 0`: for tiny positive logits float32's sigmoid rounds to exactly 0.5, so the
official code calls them background. Evaluating a sigmoid over every pixel only to compare it
with 0.5 would cost a transcendental per pixel; the rule is the same as comparing the logit with
the largest float32 whose sigmoid is not above 0.5, found once here with torch's own float32
sigmoid. Masks, their boxes, mask scores, the CLIP-branch test and the evaluation's masks all use
FOREGROUND_LOGIT (the teacher SAM's masks keep SAM's own rule, logit > 0).
"""
from __future__ import annotations

import numpy as np
import torch


def _largest_background_logit() -> float:
    """The largest float32 x with float32 sigmoid(x) <= 0.5 (a binary search over bit patterns)."""
    low = 0  # bits of 0.0: sigmoid(0) = 0.5, background
    high = int(np.array([1.0], dtype=np.float32).view(np.int32)[0])  # sigmoid(1) > 0.5, foreground
    while low + 1 < high:
        middle = (low + high) // 2
        value = torch.from_numpy(np.array([middle], dtype=np.int32).view(np.float32))
        if bool(torch.sigmoid(value)[0] > 0.5):
            high = middle
        else:
            low = middle
    return float(np.array([low], dtype=np.int32).view(np.float32)[0])


# About 8.9e-8 with torch's CPU sigmoid: logits above it are foreground.
FOREGROUND_LOGIT: float = _largest_background_logit()


def foreground(mask_logits: torch.Tensor) -> torch.Tensor:
    """Boolean foreground of mask logits: sigmoid(logit) > 0.5, as the official code thresholds."""
    return mask_logits > FOREGROUND_LOGIT
