"""ROS prompt messages -> the model library's PromptSpec (pixels on the frame they refer to).

A list of incoming prompts (the `prompts` topic, the `segment` service, the `detections` input) goes
through one converter, `convert_prompt_list`: every prompt comes out as a request or as a failure
under its id, with the same per-message limit and the same conversion errors caught on every path.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ovsam_model.prompts import PromptSpec


@dataclass(frozen=True)
class PromptRequest:
    """One prompt as the node received it: what to segment, on which frame, and whether to track it."""

    spec: PromptSpec
    stamp_ns: int = 0          # 0 = the latest frame
    track: bool = False
    # When the node took it in (time.monotonic()): the queue policy fails prompts that waited too long.
    received_at: float = field(default_factory=time.monotonic, compare=False)

    @property
    def prompt_id(self) -> str:
        return self.spec.prompt_id


@dataclass(frozen=True)
class PromptFailure:
    """A prompt that produced no instance, and why: published in failed_prompt_ids / failure_reasons."""

    prompt_id: str
    reason: str


class PromptConversionError(ValueError):
    pass


MAX_PROMPTS_PER_MESSAGE = 256
# What converting one prompt may raise: its own checks (PromptConversionError), and numbers or arrays
# that will not convert (ValueError, TypeError). A prompt that raises one of these fails alone.
CONVERSION_ERRORS = (PromptConversionError, ValueError, TypeError)


@dataclass
class ConvertedPrompts:
    """One message's prompts: those to run, and those already answered with a failure."""

    requests: list[PromptRequest] = field(default_factory=list)
    failures: list[PromptFailure] = field(default_factory=list)


def convert_prompt_list(items: Sequence[Any], prompt_id: Callable[[int, Any], str],
                        to_request: Callable[[int, Any], PromptRequest],
                        limit: int = MAX_PROMPTS_PER_MESSAGE) -> ConvertedPrompts:
    """Every item becomes a request or a failure under its id: past `limit` items each fails with the
    reason, and an item whose conversion raises one of CONVERSION_ERRORS fails with the error."""
    converted = ConvertedPrompts()
    for index, item in enumerate(items):
        item_id = prompt_id(index, item)
        if index >= limit:
            converted.failures.append(PromptFailure(item_id, f"more than {limit} prompts in one message"))
            continue
        try:
            converted.requests.append(to_request(index, item))
        except CONVERSION_ERRORS as error:
            converted.failures.append(PromptFailure(item_id, str(error)))
    return converted


def requests_from_prompt_msgs(prompts: Sequence[Any], stamp_ns: Callable[[Any], int]) -> ConvertedPrompts:
    """ovsam_ros/Prompt messages (the prompts topic, the Segment service); `stamp_ns(prompt)` names the
    frame each refers to."""
    return convert_prompt_list(prompts, lambda _, prompt: str(prompt.id),
                               lambda _, prompt: request_from_prompt_msg(prompt, stamp_ns(prompt)))


def request_from_prompt_msg(msg: Any, stamp_ns: int, max_points: int = 64) -> PromptRequest:
    """Convert an ovsam_ros/Prompt. Geometry against the frame is checked later, once the frame is known."""
    prompt_id = str(msg.id)
    if len(msg.points) > max_points:
        raise PromptConversionError(
            f"prompt '{prompt_id}' has {len(msg.points)} points; at most {max_points} are allowed")
    points = np.array([[p.x, p.y] for p in msg.points], dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(list(msg.point_labels), dtype=np.int64)
    if labels.size == 0:
        labels = np.ones(len(points), dtype=np.int64)
    box_values = [float(v) for v in msg.box]
    box = None if all(v == 0.0 for v in box_values) else np.asarray(box_values, dtype=np.float64)
    return PromptRequest(PromptSpec(prompt_id=prompt_id, points=points, point_labels=labels, box=box),
                         stamp_ns=stamp_ns, track=bool(msg.track))


def click_request(prompt_id: str, x: float, y: float, stamp_ns: int = 0) -> PromptRequest:
    """A single foreground click (rqt_image_view's mouse topic, or a projected RViz point)."""
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PromptConversionError(f"click '{prompt_id}' has a non-finite coordinate ({x}, {y})")
    return PromptRequest(PromptSpec(prompt_id=prompt_id, points=np.array([[x, y]]), point_labels=np.array([1])),
                         stamp_ns=stamp_ns)


def requests_from_detections(detections: Sequence[Any], stamp_ns: int, fallback_prefix: str) -> ConvertedPrompts:
    """vision_msgs/Detection2D boxes (centre + size) as box prompts; the detector's id is kept as prompt id."""
    return convert_prompt_list(
        detections, lambda index, detection: detection_prompt_id(detection, index, fallback_prefix),
        lambda index, detection: request_from_detection(detection, index, stamp_ns, fallback_prefix))


def detection_prompt_id(detection: Any, index: int, fallback_prefix: str) -> str:
    return str(getattr(detection, "id", "") or f"{fallback_prefix}-{index}")


def request_from_detection(detection: Any, index: int, stamp_ns: int, fallback_prefix: str) -> PromptRequest:
    bbox = detection.bbox
    cx, cy = float(bbox.center.position.x), float(bbox.center.position.y)
    half_w, half_h = float(bbox.size_x) / 2.0, float(bbox.size_y) / 2.0
    box = np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
    return PromptRequest(PromptSpec(prompt_id=detection_prompt_id(detection, index, fallback_prefix), box=box),
                         stamp_ns=stamp_ns)
