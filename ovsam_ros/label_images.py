"""One frame's instances as label images, the form semantic mapping stacks read (no ROS here).

- instance ids: pixel = 1 + the instance's index in that frame's InstanceMaskArray.instances, 0 = none.
- semantic: pixel = 1 + the instance's class_index in the active vocabulary, 0 = none. It is derived
  from the instance ids, so both images always agree on which instance owns a pixel.

Where masks overlap, the instance with the higher `score` (InstanceMask.score, the label probability)
owns the pixel; on equal scores the earlier instance (lower index) does. An instance whose class is
unknown (class_index -1) keeps its pixels in the instance ids and leaves 0 in the semantic image.
Both images are uint16 (mono16): at most 65535 instances per frame and classes with class_index
below 65535; a class beyond that cannot be written and reads 0 in the semantic image.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ovsam_model.instances import InstancePrediction

NO_INSTANCE = 0
LARGEST_LABEL = int(np.iinfo(np.uint16).max)


def mask_in_box(prediction: InstancePrediction) -> tuple[int, int, np.ndarray]:
    """(x0, y0, the mask cropped to its box): the part of the mask InstanceMask carries. The painted
    images use the same crop, so they hold exactly the pixels of the published masks."""
    if prediction.box is None:
        return 0, 0, np.zeros((0, 0), dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in prediction.box)
    return x0, y0, prediction.mask[y0:y1, x0:x1]


def instance_id_image(predictions: Sequence[InstancePrediction], height: int, width: int) -> np.ndarray:
    """(height, width) uint16: 1 + index of the instance owning each pixel (the higher score wins an
    overlap, then the lower index), 0 where no instance is."""
    if len(predictions) > LARGEST_LABEL:
        raise ValueError(f"{len(predictions)} instances do not fit a mono16 image (at most {LARGEST_LABEL})")
    ids = np.zeros((height, width), dtype=np.uint16)
    # Painted from the weakest owner to the strongest, so the owner an overlap must have is painted last.
    weakest_first = sorted(range(len(predictions)), key=lambda index: (float(predictions[index].score), -index))
    for index in weakest_first:
        x0, y0, crop = mask_in_box(predictions[index])
        if crop.size:
            region = ids[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]]
            region[crop] = index + 1
    return ids


def semantic_image(instance_ids: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
    """uint16 of the same shape: 1 + class_index of each pixel's instance (`class_indices[i]` for
    instance id i + 1), 0 where no instance is or its class is unknown or too large for mono16."""
    lookup = np.zeros(len(class_indices) + 1, dtype=np.uint16)
    for index, class_index in enumerate(class_indices):
        if 0 <= class_index < LARGEST_LABEL:
            lookup[index + 1] = class_index + 1
    return lookup[instance_ids]
