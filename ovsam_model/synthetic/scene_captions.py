"""Image-level image-text pairs, as the real CLIP learned from: a CLIP-style random resized crop of a
whole scene, and an alt-text-like caption naming the objects the crop shows (in random order, as
many as fit the text tower's context). No object is cropped out for its own sake and no caption
describes one region: region-level recognition is left to CLIP2SAM, as in the paper."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import cv2
import numpy as np

from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.text_prompts import VILD_TEMPLATES

# An object counts as shown by a crop when at least this share of its visible pixels lies inside it.
MIN_SHARE_INSIDE = 0.5


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int, area_range: tuple[float, float],
                            ratio_range: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) drawn as torchvision's RandomResizedCrop does (area share, log-uniform aspect);
    the whole image when ten draws do not fit."""
    for _ in range(10):
        area = rng.uniform(*area_range) * height * width
        ratio = math.exp(rng.uniform(math.log(ratio_range[0]), math.log(ratio_range[1])))
        w, h = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    return 0, 0, width, height


def scene_crop(image: np.ndarray, instance_map: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
               out_size: int, area_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A random resized crop of the scene at out_size x out_size and the classes it shows (sorted,
    unique); crops that show no object are redrawn a few times, then the whole scene is taken."""
    height, width = instance_map.shape
    visible = np.bincount(instance_map.ravel(), minlength=len(labels) + 1)[1:len(labels) + 1]
    for attempt in range(6):
        x0, y0, w, h = random_resized_crop_box(rng, height, width, area_range) if attempt < 5 else (0, 0, width, height)
        inside = np.bincount(instance_map[y0:y0 + h, x0:x0 + w].ravel(), minlength=len(labels) + 1)[1:len(labels) + 1]
        shown = labels[(inside >= MIN_SHARE_INSIDE * visible) & (visible > 0)]
        if len(shown):
            break
    crop = cv2.resize(np.ascontiguousarray(image[y0:y0 + h, x0:x0 + w]), (out_size, out_size),
                      interpolation=cv2.INTER_AREA if w > out_size else cv2.INTER_LINEAR)
    return crop, np.unique(shown)


def scene_caption(classes: Sequence[int], rng: np.random.Generator, token_count: Callable[[str], int],
                  max_tokens: int, templates: Sequence[str] = VILD_TEMPLATES) -> tuple[str, tuple[int, ...]]:
    """An alt-text caption naming `classes` in random order ("red circle, blue star and green
    square"), half of the time inside a random ViLD template; names are dropped from the end until
    it fits `max_tokens`. Returns the caption and the classes it names."""
    order = [int(c) for c in rng.permutation(np.asarray(classes, dtype=np.int64))]
    template = templates[int(rng.integers(len(templates)))] if rng.random() < 0.5 else "{}"
    while True:
        names = [CLASS_NAMES[c] for c in order]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        text = template.format(listed) if names else template.format("scene")
        if token_count(text) <= max_tokens or len(order) <= 1:
            return text, tuple(sorted(order))
        order = order[:-1]
