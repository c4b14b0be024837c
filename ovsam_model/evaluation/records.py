"""Per-instance results of one method and their summary: means for base and novel classes with
95 % bootstrap intervals (scenes resampled, since instances of one scene are not independent)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass
class MethodRecord:
    """What one method got right per instance, in the order instances were evaluated."""
    box_iou: list[float] = field(default_factory=list)
    point_iou: list[float] = field(default_factory=list)
    box_correct: list[bool] = field(default_factory=list)
    point_correct: list[bool] = field(default_factory=list)
    seconds: float = 0.0  # time of the box-prompt path: image encoding, masks and naming
    prompt_seconds: float = 0.0  # of which per-prompt work (everything after the image encoding)
    images: int = 0
    prompts: int = 0

    def add(self, box_iou: np.ndarray | None, point_iou: np.ndarray | None, box_correct: np.ndarray,
            point_correct: np.ndarray | None, seconds: float = 0.0, prompt_seconds: float = 0.0) -> None:
        if box_iou is not None:
            self.box_iou += np.asarray(box_iou, dtype=np.float64).tolist()
        if point_iou is not None:
            self.point_iou += np.asarray(point_iou, dtype=np.float64).tolist()
        self.box_correct += np.asarray(box_correct, dtype=bool).tolist()
        if point_correct is not None:
            self.point_correct += np.asarray(point_correct, dtype=bool).tolist()
        self.seconds += seconds
        self.prompt_seconds += prompt_seconds
        self.images += 1
        self.prompts += len(box_correct)

    def summary(self, novel: np.ndarray, scene_of: np.ndarray, timed: bool = True) -> dict[str, Any]:
        """Means (NaN for an empty split) and, under "intervals", their 95 % bootstrap intervals."""
        out: dict[str, Any] = {}
        intervals: dict[str, list[float]] = {}
        everything = np.ones_like(novel)
        metrics = [("box_miou", self.box_iou, everything), ("box_miou_base", self.box_iou, ~novel),
                   ("box_miou_novel", self.box_iou, novel), ("point_miou", self.point_iou, everything),
                   ("point_miou_base", self.point_iou, ~novel), ("point_miou_novel", self.point_iou, novel),
                   ("acc_base", self.box_correct, ~novel), ("acc_novel", self.box_correct, novel),
                   ("accuracy", self.box_correct, everything), ("point_acc_base", self.point_correct, ~novel),
                   ("point_acc_novel", self.point_correct, novel)]
        for name, values, which in metrics:
            if len(values) == 0:
                continue
            array = np.asarray(values, dtype=np.float64)
            out[name] = float(array[which].mean()) if which.any() else float("nan")
            if name != "accuracy":
                intervals[name] = bootstrap_interval(array, which, scene_of)
        out["intervals"] = intervals
        if timed:
            out.update({
                "ms_per_prompt": 1000.0 * self.seconds / max(self.prompts, 1),
                # The split: per-image encoding, and the cost of each further prompt on an encoded image.
                "encode_ms_per_image": 1000.0 * (self.seconds - self.prompt_seconds) / max(self.images, 1),
                "marginal_ms_per_prompt": 1000.0 * self.prompt_seconds / max(self.prompts, 1),
            })
        return out


def bootstrap_interval(values: np.ndarray, which: np.ndarray, scene_of: np.ndarray,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[float]:
    """The 2.5 and 97.5 percentiles of the mean of values[which] over scenes drawn with replacement."""
    if not which.any():
        return [float("nan"), float("nan")]
    num_scenes = int(scene_of.max()) + 1
    sums = np.bincount(scene_of[which], weights=values[which], minlength=num_scenes)
    counts = np.bincount(scene_of[which], minlength=num_scenes).astype(np.float64)
    draws = np.random.default_rng(seed).integers(num_scenes, size=(resamples, num_scenes))
    drawn_counts = counts[draws].sum(axis=1)
    means = sums[draws].sum(axis=1) / np.maximum(drawn_counts, 1)
    means = means[drawn_counts > 0]
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]
