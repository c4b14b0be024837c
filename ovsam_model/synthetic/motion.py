"""A moving version of the shapes world: the demo's built-in camera.

The same objects (class, size, aspect) drift and turn over a fixed background; `render(i)` gives
frame i and its exact visible masks, so a scripted operator knows the truth of every frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ovsam_model.synthetic.backgrounds import random_background
from ovsam_model.synthetic.classes import CLASS_NAMES, colour_and_shape
from ovsam_model.synthetic.scenes import Scene, _paint_object, _shape_mask
from ovsam_model.synthetic.shapes import shape_polygon


@dataclass(frozen=True)
class MovingObject:
    label: int
    radius: float
    aspect: float
    start: tuple[float, float]
    velocity: tuple[float, float]    # pixels per frame
    angle: float
    spin: float                      # radians per frame
    paint_seed: int


class MovingWorld:
    """`num_objects` objects of the given classes (random when None) moving at `speed` px/frame."""

    def __init__(self, seed: int = 0, size: int = 256, num_objects: int = 4, speed: float = 1.5,
                 classes: list[int] | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.size = size
        self.background = random_background(rng, size)
        pool = np.asarray(classes if classes is not None else range(len(CLASS_NAMES)))
        labels = rng.choice(pool, size=num_objects, replace=len(pool) < num_objects)
        self.objects = []
        for index, label in enumerate(labels):
            radius = rng.uniform(22, 40) * size / 256
            heading = rng.uniform(0, 2 * math.pi)
            self.objects.append(MovingObject(
                label=int(label), radius=radius,
                aspect=rng.uniform(0.8, 1.25),
                start=tuple(rng.uniform(radius, size - radius, size=2)),
                velocity=(speed * math.cos(heading), speed * math.sin(heading)),
                angle=rng.uniform(0, 2 * math.pi), spin=rng.uniform(-0.03, 0.03),
                paint_seed=int(rng.integers(1 << 31)) + index))

    def _position(self, obj: MovingObject, frame: int) -> tuple[float, float]:
        # Bounce inside the frame: reflect the unbounded straight path at the borders.
        low, high = obj.radius, self.size - obj.radius
        span = high - low
        position = []
        for start, velocity in zip(obj.start, obj.velocity):
            travelled = (start - low + velocity * frame) % (2 * span)
            position.append(low + (travelled if travelled <= span else 2 * span - travelled))
        return position[0], position[1]

    def render(self, frame: int) -> Scene:
        image = self.background.astype(np.float64)
        instance_map = np.zeros((self.size, self.size), dtype=np.uint8)
        for index, obj in enumerate(self.objects):
            colour, shape = colour_and_shape(obj.label)
            polygon = shape_polygon(shape, self._position(obj, frame), obj.radius, obj.aspect,
                                    obj.angle + obj.spin * frame)
            mask = _shape_mask(self.size, polygon)
            _paint_object(np.random.default_rng(obj.paint_seed), image, mask, colour)
            instance_map[mask] = index + 1
        labels = np.asarray([obj.label for obj in self.objects], dtype=np.int64)
        return Scene(np.clip(image, 0, 255).astype(np.uint8), instance_map, labels)
