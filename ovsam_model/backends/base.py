"""What every inference backend offers, and the prompt checks they share.

A backend runs OV-SAM's two halves: `encode_image` (backbone, SAM2CLIP adapter, FPN; once per
image) and `decode` (prompt encoder, mask decoder, region pooling; per batch of prompts), with the
same inputs and outputs as `OVSAM.encode_image` / `OVSAM.decode`. Everything else (preprocessing,
mask upsampling, naming against a vocabulary) stays with the torch model: it is cheap tensor work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ovsam_model.modeling.ovsam import DecoderOutput, ImageFeatures
from ovsam_model.runtime_choices import PRECISIONS

PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# The decoder graphs of the exported backends, one per token layout: SAM appends a padding token
# to point-only prompts and none when there is a box, so the layouts are different sequences.
LAYOUT_POINTS = "points"
LAYOUT_BOX = "box"
LAYOUT_POINTS_BOX = "points_box"
PROMPT_LAYOUTS = (LAYOUT_POINTS, LAYOUT_BOX, LAYOUT_POINTS_BOX)


class BackendUnavailableError(RuntimeError):
    """A backend cannot run here (a package or a GPU is missing); the message says what to install."""


@runtime_checkable
class InferenceBackend(Protocol):
    name: str
    precision: str
    # How many images one encode_image call may take ([B, 3, S, S]); a predictor encoding several
    # cameras' frames at once splits them into batches of at most this many.
    max_image_batch: int

    @property
    def device(self) -> torch.device: ...

    def encode_image(self, pixels: Tensor) -> ImageFeatures: ...

    def decode(
        self,
        features: ImageFeatures,
        points: Tensor | None = None,
        point_labels: Tensor | None = None,
        boxes: Tensor | None = None,
    ) -> DecoderOutput: ...

    def describe(self) -> str: ...


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


@dataclass
class PromptArrays:
    """One batch of prompts that share a token layout, as float32 arrays in network-input pixels."""

    layout: str
    points: np.ndarray  # [N, P, 2]; P = 0 for box-only prompts
    labels: np.ndarray  # [N, P]; 1 foreground, 0 background, -1 padding
    boxes: np.ndarray | None  # [N, 4] or None

    @property
    def count(self) -> int:
        return int(self.points.shape[0])

    def rows(self, start: int, stop: int) -> "PromptArrays":
        return PromptArrays(self.layout, self.points[start:stop], self.labels[start:stop],
                            None if self.boxes is None else self.boxes[start:stop])


def _as_float_array(value: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(np.asarray(value, dtype=np.float32))


def prompt_arrays(points: Tensor | None, point_labels: Tensor | None, boxes: Tensor | None) -> PromptArrays:
    """Validate a decode call's prompts as OVSAM.decode does and pick the graph layout they need."""
    if points is None and boxes is None:
        raise ValueError("decode needs point prompts, box prompts, or both")
    box_array = None
    if boxes is not None:
        box_array = _as_float_array(boxes)
        if box_array.ndim != 2 or box_array.shape[-1] != 4:
            raise ValueError(f"boxes must be [N, 4] (x1, y1, x2, y2 in network-input pixels), got {box_array.shape}")
    if points is None:
        count = box_array.shape[0]
        return PromptArrays(LAYOUT_BOX, np.zeros((count, 0, 2), np.float32), np.zeros((count, 0), np.float32),
                            box_array)
    point_array = _as_float_array(points)
    if point_array.ndim != 3 or point_array.shape[-1] != 2:
        raise ValueError(f"points must be [N, P, 2] (x, y in network-input pixels), got {point_array.shape}")
    if point_labels is None:
        label_array = np.ones(point_array.shape[:2], np.float32)
    else:
        label_array = _as_float_array(point_labels)
    if label_array.shape != point_array.shape[:2]:
        raise ValueError(
            f"point_labels must be [N, P] = {point_array.shape[:2]} (1 foreground, 0 background, -1 padding), "
            f"got {label_array.shape}")
    if box_array is None:
        return PromptArrays(LAYOUT_POINTS, point_array, label_array, None)
    if box_array.shape[0] != point_array.shape[0]:
        raise ValueError(f"{point_array.shape[0]} point prompts but {box_array.shape[0]} boxes: "
                         "a combined prompt needs one box per point set")
    layout = LAYOUT_POINTS_BOX if point_array.shape[1] else LAYOUT_BOX
    return PromptArrays(layout, point_array, label_array, box_array)


def features_from_outputs(outputs: list[Tensor]) -> ImageFeatures:
    """ImageFeatures from the image graph's outputs in export order (embedding, fpn0..3, clip_last)."""
    return ImageFeatures(embedding=outputs[0], fpn=tuple(outputs[1:5]), clip_last=outputs[5])
