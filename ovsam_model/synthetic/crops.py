"""Object crops and captions from scenes: the image-text pairs the small CLIP learns from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.synthetic.scenes import SceneSet
from ovsam_model.text_prompts import VILD_TEMPLATES


@dataclass
class CropSet:
    images: np.ndarray  # [N, C, C, 3] uint8
    labels: np.ndarray  # [N] int64 class indices


def crop_square(image: np.ndarray, box: Sequence[float], crop_size: int, context: float = 1.3,
                shift: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """A crop_size x crop_size crop centred on `box`, its side `context` times the box's longer side.

    `shift` moves the centre by fractions of the box size; pixels outside the image repeat the border.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 2.0) * context
    cx = (x0 + x1) / 2 + shift[0] * (x1 - x0)
    cy = (y0 + y1) / 2 + shift[1] * (y1 - y0)
    scale = crop_size / side
    matrix = np.array([[scale, 0, crop_size / 2 - cx * scale], [0, scale, crop_size / 2 - cy * scale]])
    return cv2.warpAffine(image, matrix, (crop_size, crop_size),
                          flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def object_crops(scenes: SceneSet, crop_size: int, seed: int, variants: int = 2,
                 classes: Sequence[int] | None = None) -> CropSet:
    """`variants` jittered crops (context 1.1-1.6, small shifts) of every object of an allowed class."""
    rng = np.random.default_rng(seed)
    allowed = set(range(len(CLASS_NAMES)) if classes is None else classes)
    crops, labels = [], []
    for i in range(len(scenes)):
        scene = scenes.scene(i)
        boxes = masks_to_boxes(scene.masks)
        for box, label in zip(boxes, scene.labels):
            if int(label) not in allowed:
                continue
            for _ in range(variants):
                crops.append(crop_square(scene.image, box, crop_size, context=rng.uniform(1.1, 1.6),
                                         shift=rng.uniform(-0.1, 0.1, size=2)))
                labels.append(int(label))
    return CropSet(np.stack(crops) if crops else np.zeros((0, crop_size, crop_size, 3), np.uint8),
                   np.asarray(labels, dtype=np.int64))


def caption(class_index: int, rng: np.random.Generator, templates: Sequence[str] = VILD_TEMPLATES) -> str:
    """A caption for one class in a random template (the templates the vocabulary averages over)."""
    return templates[int(rng.integers(len(templates)))].format(CLASS_NAMES[class_index])
