"""Prompts for instances of the shapes world: boxes, interior points, the distance-transform centre.

The points are pixel centres in edge coordinates (pixel x spans x to x + 1, its centre x + 0.5). A
`PromptSpec`, the node and SAM count a pixel index as the pixel (SAM's prompt encoder adds the 0.5),
so in their convention these points lie half a pixel right of and below the pixel's centre. Kept:
the shipped files were trained and are evaluated with them, and the documented training command
reproduces those files only with this rule; half a pixel of the 256x256 input is far inside the
spread of the interior points training draws."""
from __future__ import annotations

import cv2
import numpy as np

from ovsam_model.mask_box import innermost_pixel


def mask_centre_point(mask: np.ndarray) -> np.ndarray:
    """(x, y) of the mask pixel farthest from the background (the paper's point prompt), pixel centre
    in edge coordinates (see above); (0.5, 0.5) for an empty mask."""
    x, y = innermost_pixel(mask) or (0, 0)
    return np.array([x + 0.5, y + 0.5], dtype=np.float32)


def random_interior_point(mask: np.ndarray, rng: np.random.Generator, margin: float = 2.0) -> np.ndarray:
    """A uniformly drawn pixel centre inside the mask, preferring pixels `margin` away from its edge."""
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    ys, xs = np.nonzero(distance >= margin)
    if len(xs) == 0:
        ys, xs = np.nonzero(mask)
    i = int(rng.integers(len(xs)))
    return np.array([xs[i] + 0.5, ys[i] + 0.5], dtype=np.float32)


def jitter_box(box: np.ndarray, rng: np.random.Generator, amount: float, limit: float) -> np.ndarray:
    """Moves each side by a normal offset of `amount` x the box side, at most `limit` pixels.

    `box` is one box [4] or a stack [..., 4] (x1, y1, x2, y2), each box jittered on its own."""
    box = np.asarray(box)
    w, h = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
    noise = rng.normal(0, amount, size=box.shape) * np.stack([w, h, w, h], axis=-1)
    return (box + np.clip(noise, -limit, limit)).astype(np.float32)
