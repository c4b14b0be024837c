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
from ovsam_model.synthetic.scenes import MIN_VISIBLE_FRACTION, Scene, _paint_object, _shape_mask
from ovsam_model.synthetic.shapes import shape_polygon

# Smaller visible parts are slivers nobody would be asked to name (at 640x480, a 14 px square).
ASKABLE_MIN_PIXELS = 200


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


def shown_objects(scene: Scene, min_pixels: int = ASKABLE_MIN_PIXELS) -> list[int]:
    """The objects of `scene` with at least `min_pixels` visible, however much of them is covered."""
    return [i for i in range(len(scene.labels)) if int((scene.instance_map == i + 1).sum()) >= min_pixels]


class MovingWorld:
    """`num_objects` objects of the given classes (random when None) moving at `speed` px/frame, in
    frames `size` pixels wide and `height` high (None: square). A square world of a seed renders the
    same frames whatever the version of this class that has `height`."""

    def __init__(self, seed: int = 0, size: int = 256, num_objects: int = 4, speed: float = 1.5,
                 classes: list[int] | None = None, height: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.width, self.height = size, (height if height is not None else size)
        self.size = size
        # Shapes are drawn on a square canvas of the long side and cropped to the frame.
        self._side = max(self.width, self.height)
        self.background = random_background(rng, self._side)[:self.height, :self.width]
        pool = np.asarray(classes if classes is not None else range(len(CLASS_NAMES)))
        labels = rng.choice(pool, size=num_objects, replace=len(pool) < num_objects)
        self.objects = []
        for index, label in enumerate(labels):
            # Scaled with the long side: after the model resizes it to its input, objects keep their size.
            radius = rng.uniform(22, 40) * max(self.width, self.height) / 256
            heading = rng.uniform(0, 2 * math.pi)
            self.objects.append(MovingObject(
                label=int(label), radius=radius,
                aspect=rng.uniform(0.8, 1.25),
                start=tuple(rng.uniform([radius, radius], [self.width - radius, self.height - radius])),
                velocity=(speed * math.cos(heading), speed * math.sin(heading)),
                angle=rng.uniform(0, 2 * math.pi), spin=rng.uniform(-0.03, 0.03),
                paint_seed=int(rng.integers(1 << 31)) + index))

    def _position(self, obj: MovingObject, frame: int) -> tuple[float, float]:
        # Bounce inside the frame: reflect the unbounded straight path at the borders.
        position = []
        for start, velocity, extent in zip(obj.start, obj.velocity, (self.width, self.height)):
            low, high = obj.radius, extent - obj.radius
            span = high - low
            travelled = (start - low + velocity * frame) % (2 * span)
            position.append(low + (travelled if travelled <= span else 2 * span - travelled))
        return position[0], position[1]

    def _mask(self, obj: MovingObject, frame: int) -> np.ndarray:
        _, shape = colour_and_shape(obj.label)
        polygon = shape_polygon(shape, self._position(obj, frame), obj.radius, obj.aspect, obj.angle + obj.spin * frame)
        return _shape_mask(self._side, polygon)[:self.height, :self.width]

    def visible_fractions(self, frame: int, instance_map: np.ndarray | None = None) -> list[float]:
        """For each object, the part of its own shape that is not hidden by the objects drawn over it
        (in the training and held-out scenes all but ~0.5 % of objects show 55 % or more, see
        `scenes.MIN_VISIBLE_FRACTION`; this world has no such rule).
        `instance_map`: frame `frame`'s, when the caller has rendered it already."""
        scene_map = self.render(frame).instance_map if instance_map is None else instance_map
        fractions = []
        for index, obj in enumerate(self.objects):
            whole = int(self._mask(obj, frame).sum())
            fractions.append(float((scene_map == index + 1).sum()) / whole if whole else 0.0)
        return fractions

    def askable(self, frame: int, instance_map: np.ndarray | None = None) -> list[int]:
        """The objects of frame `frame` a person could be asked to name, as in the training world:
        at least `ASKABLE_MIN_PIXELS` visible and at least `MIN_VISIBLE_FRACTION` of the shape."""
        scene_map = self.render(frame).instance_map if instance_map is None else instance_map
        fractions = self.visible_fractions(frame, scene_map)
        return [i for i, fraction in enumerate(fractions)
                if fraction >= MIN_VISIBLE_FRACTION and int((scene_map == i + 1).sum()) >= ASKABLE_MIN_PIXELS]

    def render(self, frame: int) -> Scene:
        image = self.background.astype(np.float64)
        instance_map = np.zeros((self.height, self.width), dtype=np.uint8)
        for index, obj in enumerate(self.objects):
            colour, _ = colour_and_shape(obj.label)
            mask = self._mask(obj, frame)
            _paint_object(np.random.default_rng(obj.paint_seed), image, mask, colour)
            instance_map[mask] = index + 1
        labels = np.asarray([obj.label for obj in self.objects], dtype=np.int64)
        return Scene(np.clip(image, 0, 255).astype(np.uint8), instance_map, labels)
