"""What the predictor returns per instance. Without torch, so that a process that only receives
predictions (the ROS node, when its model runs in a child process) need not load it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class InstancePrediction:
    """One segmented, named instance, in original-image pixels."""

    prompt_id: str
    mask: np.ndarray  # (H, W) bool
    mask_score: float  # mean foreground probability inside the mask; 0 for an empty mask
    box: tuple[int, int, int, int] | None  # tight box x0, y0, x1, y1 (x1/y1 exclusive); None if empty
    class_index: int  # row in the vocabulary used; -1 when not recognised (empty mask)
    label: str  # "" when not recognised
    score: float  # probability of `label`: softmax over the K classes and background
    top_labels: list[str] = field(default_factory=list)
    top_scores: list[float] = field(default_factory=list)
    top_indices: list[int] = field(default_factory=list)

    @property
    def area(self) -> int:
        """Mask pixels."""
        return int(np.count_nonzero(self.mask))

    def summary(self) -> dict:
        """Everything but the mask, as JSON-ready values."""
        return {
            "prompt_id": self.prompt_id,
            "label": self.label,
            "class_index": self.class_index,
            "score": self.score,
            "mask_score": self.mask_score,
            "box": list(self.box) if self.box is not None else None,
            "area": self.area,
            "top_labels": list(self.top_labels),
            "top_scores": list(self.top_scores),
            "top_indices": list(self.top_indices),
        }
