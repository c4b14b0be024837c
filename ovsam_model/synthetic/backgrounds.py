"""Backgrounds for the shapes world: noise, gradients, textures and clutter.

Backgrounds are kept less saturated than the object colours, so that the class of an object is a
property of the object and not of what lies behind it; clutter is thin and small, never a filled
shape of an object's size.
"""
from __future__ import annotations

import cv2
import numpy as np


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(30, 200)
    tint = rng.uniform(-35, 35, size=3)
    return np.clip(grey + tint, 0, 255)


def noise_background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = _muted_colour(rng)
    coarse = rng.normal(0, rng.uniform(8, 30), size=(size // 16, size // 16, 3))
    coarse = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, rng.uniform(2, 12), size=(size, size, 3))
    return base + coarse + fine


def gradient_background(rng: np.random.Generator, size: int) -> np.ndarray:
    start, end = _muted_colour(rng), _muted_colour(rng)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (np.cos(angle) * xs + np.sin(angle) * ys)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    return start + (end - start) * t[..., None]


def texture_background(rng: np.random.Generator, size: int) -> np.ndarray:
    first, second = _muted_colour(rng), _muted_colour(rng)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    period = rng.uniform(6, 28)
    angle = rng.uniform(0, np.pi)
    u = np.cos(angle) * xs + np.sin(angle) * ys
    v = -np.sin(angle) * xs + np.cos(angle) * ys
    kind = rng.integers(3)
    if kind == 0:  # stripes
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    elif kind == 1:  # checker
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
    else:  # waves
        t = 0.5 + 0.25 * np.sin(2 * np.pi * u / period) + 0.25 * np.sin(2 * np.pi * v / (period * 1.7))
    return first + (second - first) * t[..., None]


def add_clutter(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Thin lines, small dots and short arcs in random (also saturated) colours."""
    size = image.shape[0]
    out = np.ascontiguousarray(image.astype(np.float32))
    for _ in range(int(rng.integers(10, 40))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        kind = rng.integers(3)
        if kind == 0:
            p1 = tuple(int(v) for v in rng.integers(0, size, size=2))
            p2 = tuple(int(v) for v in rng.integers(0, size, size=2))
            cv2.line(out, p1, p2, colour, thickness=int(rng.integers(1, 3)))
        elif kind == 1:
            centre = tuple(int(v) for v in rng.integers(0, size, size=2))
            cv2.circle(out, centre, int(rng.integers(1, 4)), colour, thickness=-1)
        else:
            centre = tuple(int(v) for v in rng.integers(0, size, size=2))
            axes = (int(rng.integers(4, 20)), int(rng.integers(4, 20)))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(out, centre, axes, float(rng.uniform(0, 180)), start, start + float(rng.uniform(30, 120)),
                        colour, thickness=1)
    return out


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float HxWx3 background in [0, 255], one of the four kinds."""
    kind = rng.integers(4)
    if kind == 0:
        image = noise_background(rng, size)
    elif kind == 1:
        image = gradient_background(rng, size)
    elif kind == 2:
        image = texture_background(rng, size)
    else:
        image = add_clutter(rng, [noise_background, gradient_background,
                                  texture_background][rng.integers(3)](rng, size))
    if rng.random() < 0.3 and kind != 3:
        image = add_clutter(rng, image)
    return np.clip(image, 0, 255)
