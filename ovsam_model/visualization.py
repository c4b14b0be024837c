"""An overlay picture of predictions for people: coloured masks, outlines, labels and prompts."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from ovsam_model.image_input import as_rgb_uint8
from ovsam_model.prompts import PromptSpec

if TYPE_CHECKING:
    from ovsam_model.predictor import InstancePrediction

# Well-separated, saturated colours (RGB); instances cycle through them.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (0, 0, 128), (128, 128, 128),
)
FOREGROUND_MARKER = (0, 255, 0)
BACKGROUND_MARKER = (255, 0, 0)
BOX_PROMPT_COLOUR = (255, 255, 255)


def instance_colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def caption(prediction: "InstancePrediction") -> str:
    """'label score' when recognised, the mask score otherwise."""
    if prediction.label:
        return f"{prediction.label} {prediction.score:.2f}"
    return f"mask {prediction.mask_score:.2f}"


def draw_instances(
    image_rgb: np.ndarray,
    predictions: Sequence["InstancePrediction"],
    *,
    alpha: float = 0.5,
    prompts: Sequence[PromptSpec] = (),
) -> np.ndarray:
    """A new RGB uint8 picture: each mask tinted with its own colour at `alpha` and outlined,
    its caption at the top-left of its box, and the prompts marked (foreground points green,
    background points red, boxes white). The input image is not modified."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    canvas = as_rgb_uint8(image_rgb).copy()
    height, width = canvas.shape[:2]
    # Line widths and text grow with the picture so that overlays stay legible on large frames.
    thickness = max(1, round(min(height, width) / 300))
    font_scale = max(0.35, min(height, width) / 900)

    for index, prediction in enumerate(predictions):
        mask = np.asarray(prediction.mask, dtype=bool)
        if mask.shape != (height, width):
            raise ValueError(
                f"prediction {index} has a {mask.shape} mask for a {height}x{width} image")
        if not mask.any():
            continue
        colour = np.array(instance_colour(index), dtype=np.float32)
        tinted = canvas[mask].astype(np.float32) * (1.0 - alpha) + colour * alpha
        canvas[mask] = np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, instance_colour(index), thickness)

    for index, prediction in enumerate(predictions):
        if prediction.box is None:
            continue
        _put_caption(canvas, caption(prediction), prediction.box, instance_colour(index), font_scale, thickness)

    for prompt in prompts:
        _draw_prompt(canvas, prompt, thickness)
    return canvas


def _put_caption(canvas: np.ndarray, text: str, box: tuple[int, int, int, int],
                 colour: tuple[int, int, int], font_scale: float, thickness: int) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, thickness)
    height, width = canvas.shape[:2]
    x = int(min(max(box[0], 0), max(width - text_w, 0)))
    # Above the box when there is room, otherwise just inside its top edge.
    y = int(box[1]) - 2 if box[1] - text_h - baseline - 2 >= 0 else int(box[1]) + text_h + 2
    y = min(max(y, text_h), height - baseline)
    cv2.rectangle(canvas, (x, y - text_h - 1), (x + text_w, y + baseline), colour, cv2.FILLED)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(canvas, text, (x, y), font, font_scale, ink, thickness, cv2.LINE_AA)


def _draw_prompt(canvas: np.ndarray, prompt: PromptSpec, thickness: int) -> None:
    radius = max(3, 3 * thickness)
    if prompt.box is not None and prompt.box.shape == (4,) and np.all(np.isfinite(prompt.box)):
        x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), BOX_PROMPT_COLOUR, thickness)
    if prompt.num_points == 0:
        return
    labels = prompt.labels_or_default() if prompt.point_labels.size in (0, prompt.num_points) else None
    for i, (x, y) in enumerate(prompt.points):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        foreground = labels is None or labels[i] == 1
        centre = (int(round(x)), int(round(y)))
        cv2.circle(canvas, centre, radius, FOREGROUND_MARKER if foreground else BACKGROUND_MARKER, cv2.FILLED)
        cv2.circle(canvas, centre, radius, (0, 0, 0), 1)
