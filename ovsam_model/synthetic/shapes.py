"""Shape outlines as polygons, placed by centre, size, aspect and rotation."""
from __future__ import annotations

import math

import numpy as np


def _regular_polygon(n: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(arm: float = 0.34) -> np.ndarray:
    a = arm
    return np.array([
        [-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
        [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a],
    ], dtype=np.float64)


# Outlines in a unit frame (extent about [-1, 1]); circles get many vertices.
UNIT_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular_polygon(64),
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * 0.85,
    "triangle": _regular_polygon(3, phase=-math.pi / 2) * np.array([1.0, 1.0]) + np.array([0.0, 0.2]),
    "star": _star(),
    "hexagon": _regular_polygon(6),
    "cross": _cross(),
}


def shape_polygon(shape: str, centre: tuple[float, float], radius: float, aspect: float,
                  angle: float) -> np.ndarray:
    """Vertices (x, y) in pixels of `shape` scaled to `radius`, stretched by `aspect` along its
    own x axis (and 1/aspect along y), rotated by `angle` radians about `centre`."""
    if shape not in UNIT_OUTLINES:
        raise KeyError(f"unknown shape {shape!r}; known: {', '.join(UNIT_OUTLINES)}")
    unit = UNIT_OUTLINES[shape]
    stretch = np.array([math.sqrt(aspect), 1.0 / math.sqrt(aspect)])
    pts = unit * stretch * radius
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return pts @ rotation.T + np.asarray(centre, dtype=np.float64)
