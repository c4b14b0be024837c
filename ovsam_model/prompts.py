"""One prompt for the interactive segmenter: points and/or a box in original-image pixels.

Coordinates follow the image: x to the right, y down, in pixels of the image as the caller has
it (not the network's resized input). A pixel index is a valid coordinate; the whole picture spans
[0, W] x [0, H], and half a pixel of slack on every side absorbs rounding in callers that click
on the border.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_POINTS_PER_PROMPT = 64
# How far (in pixels) a point or box corner may lie outside the picture before it is an error.
BORDER_MARGIN = 0.5


class PromptError(ValueError):
    """A prompt that cannot be segmented; the message names the prompt and what is wrong."""


def _as_points(value: Any) -> np.ndarray:
    points = np.asarray(value if value is not None else (), dtype=np.float64)
    if points.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    return points


def _as_labels(value: Any) -> np.ndarray:
    labels = np.asarray(value if value is not None else ())
    if labels.size == 0:
        return np.zeros((0,), dtype=np.int64)
    if labels.ndim == 0:
        labels = labels.reshape(1)
    # Whole-numbered labels become int64; anything else stays as given so that `validate` can
    # name the bad value instead of a silent truncation turning 0.7 into 0.
    if np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_):
        return labels.astype(np.int64)
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    return labels


def _as_box(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    return np.asarray(value, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class PromptSpec:
    """Points (P, 2) with labels (P,) (1 foreground, 0 background; empty = all foreground) and/or
    a box (x0, y0, x1, y1), all in original-image pixels.

    Inputs are converted to float64 arrays on construction; whether they make sense is checked by
    `validate`, which needs the image size, so a prompt can be built before its image arrives.
    """

    prompt_id: str = ""
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.float64))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        # frozen: the converted arrays are installed through object.__setattr__
        object.__setattr__(self, "prompt_id", str(self.prompt_id))
        object.__setattr__(self, "points", _as_points(self.points))
        object.__setattr__(self, "point_labels", _as_labels(self.point_labels))
        object.__setattr__(self, "box", _as_box(self.box))

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0]) if self.points.ndim == 2 else 0

    @property
    def has_box(self) -> bool:
        return self.box is not None

    def labels_or_default(self) -> np.ndarray:
        """The point labels as int64, all ones when none were given."""
        if self.point_labels.size == 0:
            return np.ones((self.num_points,), dtype=np.int64)
        return self.point_labels.astype(np.int64)

    def describe(self) -> str:
        return f"prompt {self.prompt_id!r}" if self.prompt_id else "prompt (no id)"

    def validate(self, image_height: int, image_width: int) -> None:
        """Raise PromptError if this prompt cannot be segmented on an image of this size.

        Rejected: no points and no box; points not shaped (P, 2); more than 64 points; NaN or
        infinite coordinates; a point or box corner more than half a pixel outside the image;
        a box with x1 <= x0 or y1 <= y0; labels whose count differs from the points'; labels
        other than 0/1; only background points and no box (nothing says where the object is;
        with a box, background points are refinements and are allowed).
        """
        name = self.describe()
        points, labels, box = self.points, self.point_labels, self.box
        if points.ndim != 2 or points.shape[1] != 2:
            raise PromptError(f"{name}: points must be shaped (P, 2) as x, y pairs, got shape {points.shape}")
        count = points.shape[0]
        if count == 0 and box is None:
            raise PromptError(f"{name}: has neither points nor a box; give at least one")
        if count > MAX_POINTS_PER_PROMPT:
            raise PromptError(f"{name}: has {count} points; at most {MAX_POINTS_PER_PROMPT} are allowed")
        if not np.all(np.isfinite(points)):
            raise PromptError(f"{name}: a point coordinate is NaN or infinite")

        if labels.ndim != 1:
            raise PromptError(f"{name}: point_labels must be a flat list, got shape {labels.shape}")
        if labels.size:
            if labels.size != count:
                raise PromptError(f"{name}: {labels.size} point labels for {count} points; give one per point or none")
            if labels.dtype.kind not in "iuf" or not np.all(np.isin(labels, (0, 1))):
                bad = sorted({str(v) for v in labels.tolist() if v not in (0, 1)})
                raise PromptError(f"{name}: point labels must be 1 (foreground) or 0 (background), got {bad}")

        low_x, low_y = -BORDER_MARGIN, -BORDER_MARGIN
        high_x, high_y = image_width + BORDER_MARGIN, image_height + BORDER_MARGIN
        for x, y in points:
            if not (low_x <= x <= high_x and low_y <= y <= high_y):
                raise PromptError(
                    f"{name}: point ({x:g}, {y:g}) lies outside the {image_width}x{image_height} image")

        if box is not None:
            if box.shape != (4,):
                raise PromptError(f"{name}: box must be 4 numbers x0, y0, x1, y1, got shape {box.shape}")
            if not np.all(np.isfinite(box)):
                raise PromptError(f"{name}: a box coordinate is NaN or infinite")
            x0, y0, x1, y1 = (float(v) for v in box)
            if x1 <= x0 or y1 <= y0:
                raise PromptError(
                    f"{name}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty or inverted; need x1 > x0 and y1 > y0")
            if not (low_x <= x0 and x1 <= high_x and low_y <= y0 and y1 <= high_y):
                raise PromptError(
                    f"{name}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the "
                    f"{image_width}x{image_height} image")

        if count and box is None and not np.any(self.labels_or_default() == 1):
            raise PromptError(
                f"{name}: has only background points; add a foreground point (label 1) or a box")
