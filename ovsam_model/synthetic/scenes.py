"""Scenes of the shapes world: an RGB image and exact visible-instance masks, all from a seed."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ovsam_model.atomic_file import write_atomically
from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.synthetic.backgrounds import random_background
from ovsam_model.synthetic.classes import CLASS_NAMES, COLOURS, colour_and_shape
from ovsam_model.synthetic.shapes import shape_polygon

# Sizes are relative to a 256-pixel scene and scale with the scene size.
MIN_RADIUS_256 = 18.0
MAX_RADIUS_256 = 50.0
# Each object placed may hide at most 1 - this of what shows of each earlier one. An object covered
# twice can so show less of its whole shape: 3 of the first 1,051 held-out objects (down to 34 %) and
# 9 of the first 2,067 training ones (down to 32 %) do.
MIN_VISIBLE_FRACTION = 0.55
MIN_VISIBLE_PIXELS_256 = 250
# A pile (`cluster_spread`): its point is this far from the border, and placements are tried more
# often per wanted object, as more of them hide too much of an earlier one.
PILE_MARGIN_256 = 70.0
ATTEMPTS_PER_OBJECT = 8
PILE_ATTEMPTS_PER_OBJECT = 12


@dataclass
class Scene:
    image: np.ndarray          # HxWx3 uint8 RGB
    instance_map: np.ndarray   # HxW uint8: 0 background, i+1 = instance i (visible part)
    labels: np.ndarray         # [n] int64 class indices into CLASS_NAMES

    @property
    def masks(self) -> np.ndarray:
        """[n, H, W] bool visible masks."""
        ids = np.arange(1, len(self.labels) + 1, dtype=self.instance_map.dtype)
        return self.instance_map[None] == ids[:, None, None]

    def most_visible_object(self) -> int:
        """The instance (index) that shows the most pixels: the object a scripted operator tracks."""
        return int(np.argmax([(self.instance_map == index + 1).sum() for index in range(len(self.labels))]))

    @property
    def boxes(self) -> np.ndarray:
        """[n, 4] float32 (x0, y0, x1, y1) pixel boxes of the visible masks (x1, y1 exclusive)."""
        return masks_to_boxes(self.masks)


def _object_colour(rng: np.random.Generator, colour: str) -> np.ndarray:
    base = np.asarray(COLOURS[colour], dtype=np.float64)
    return np.clip(base * rng.uniform(0.85, 1.08) + rng.uniform(-14, 14, size=3), 0, 255)


def _paint_object(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, colour: str) -> None:
    """Fill `mask` with the colour, a gentle linear shading and a little noise."""
    rgb = _object_colour(rng, colour)
    ys, xs = np.nonzero(mask)
    angle = rng.uniform(0, 2 * math.pi)
    t = (np.cos(angle) * xs + np.sin(angle) * ys)
    t = (t - t.mean()) / max(float(np.ptp(t)), 1.0)
    shade = 1.0 + rng.uniform(0.0, 0.25) * t
    pixels = rgb[None, :] * shade[:, None] + rng.normal(0, 4, size=(len(xs), 3))
    image[ys, xs] = np.clip(pixels, 0, 255)


def _shape_mask(size: int, polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    # 4 bits of sub-pixel precision keep small shapes faithful.
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def generate_scene(rng: np.random.Generator, size: int = 256, classes: Sequence[int] | None = None,
                   min_objects: int = 1, max_objects: int = 6, cluster_spread: float | None = None) -> Scene:
    """One scene with min_objects..max_objects objects drawn from `classes` (indices; all 42 by
    default), placed anywhere, or with `cluster_spread` (pixels of a 256 scene) piled up: centres
    drawn normally around one point of the scene with that standard deviation.

    Objects are painted back to front; an object stays only if enough of it remains visible after
    the later ones are painted, so every instance is recognisable.
    """
    pool = np.asarray(classes if classes is not None else range(len(CLASS_NAMES)))
    if len(pool) == 0:
        raise ValueError("generate_scene needs at least one class to draw from")
    scale = size / 256.0
    image = random_background(rng, size).astype(np.float64)
    wanted = int(rng.integers(min_objects, max_objects + 1))
    margin = PILE_MARGIN_256 * scale
    pile = None if cluster_spread is None else rng.uniform(margin, size - margin, size=2)
    full_masks: list[np.ndarray] = []
    labels: list[int] = []
    attempts = 0
    max_attempts = wanted * (ATTEMPTS_PER_OBJECT if pile is None else PILE_ATTEMPTS_PER_OBJECT)
    while len(labels) < wanted and attempts < max_attempts:
        attempts += 1
        label = int(rng.choice(pool))
        _, shape = colour_and_shape(label)
        radius = rng.uniform(MIN_RADIUS_256, MAX_RADIUS_256) * scale
        aspect = rng.uniform(0.7, 1.45) if shape != "star" else rng.uniform(0.8, 1.25)
        if pile is None:
            centre = rng.uniform(radius * 0.6, size - radius * 0.6, size=2)
        else:
            centre = np.clip(pile + rng.normal(0, cluster_spread * scale, size=2), radius * 0.6, size - radius * 0.6)
        polygon = shape_polygon(shape, (float(centre[0]), float(centre[1])), radius, aspect,
                                rng.uniform(0, 2 * math.pi))
        mask = _shape_mask(size, polygon)
        if mask.sum() < MIN_VISIBLE_PIXELS_256 * scale * scale:
            continue
        # The new object is painted on top: it must not hide too much of any earlier one.
        if any((m & ~mask).sum() < MIN_VISIBLE_FRACTION * m.sum() for m in _visible(full_masks)):
            continue
        full_masks.append(mask)
        labels.append(label)
    instance_map = np.zeros((size, size), dtype=np.uint8)
    for i, (mask, label) in enumerate(zip(full_masks, labels)):
        colour, _ = colour_and_shape(label)
        _paint_object(rng, image, mask, colour)
        instance_map[mask] = i + 1
    noise_sigma = rng.uniform(0, 6)
    if noise_sigma > 0:
        image = image + rng.normal(0, noise_sigma, size=image.shape)
    scene = Scene(np.clip(image, 0, 255).astype(np.uint8), instance_map, np.asarray(labels, dtype=np.int64))
    return _drop_hidden(scene, scale)


def _visible(full_masks: list[np.ndarray]) -> list[np.ndarray]:
    """Visible parts of already placed masks, given that later ones cover earlier ones."""
    visible = []
    for i, mask in enumerate(full_masks):
        covered = np.zeros_like(mask)
        for later in full_masks[i + 1:]:
            covered |= later
        visible.append(mask & ~covered)
    return visible


def _drop_hidden(scene: Scene, scale: float) -> Scene:
    """Renumber instances, removing any whose visible part is too small (possible after occlusion)."""
    keep = [i for i in range(len(scene.labels))
            if (scene.instance_map == i + 1).sum() >= MIN_VISIBLE_PIXELS_256 * scale * scale]
    if len(keep) == len(scene.labels):
        return scene
    instance_map = np.zeros_like(scene.instance_map)
    for new, old in enumerate(keep):
        instance_map[scene.instance_map == old + 1] = new + 1
    return Scene(scene.image, instance_map, scene.labels[keep])


@dataclass
class SceneSet:
    """Many scenes stacked into arrays (compact to cache: one uint8 instance map per scene)."""
    images: np.ndarray         # [N, H, W, 3] uint8
    instance_maps: np.ndarray  # [N, H, W] uint8
    labels: np.ndarray         # [N, max_objects] int64, -1 = no object

    def __len__(self) -> int:
        return len(self.images)

    def scene(self, i: int) -> Scene:
        labels = self.labels[i]
        return Scene(self.images[i], self.instance_maps[i], labels[labels >= 0])

    def subset(self, indices: Sequence[int]) -> "SceneSet":
        """The scenes at `indices`, in that order."""
        index = np.asarray(list(indices), dtype=np.int64)
        return SceneSet(self.images[index], self.instance_maps[index], self.labels[index])

    @classmethod
    def concatenate(cls, sets: Sequence["SceneSet"]) -> "SceneSet":
        """The scenes of `sets`, one set after the other (all of one image size and label width)."""
        return cls(np.concatenate([s.images for s in sets]), np.concatenate([s.instance_maps for s in sets]),
                   np.concatenate([s.labels for s in sets]))

    def save(self, path: str | Path) -> None:
        """Atomically (a run interrupted while caching its scenes must not leave a half-written file
        that the next run would load)."""
        write_atomically(path, lambda handle: np.savez(handle, images=self.images, instance_maps=self.instance_maps,
                                                        labels=self.labels))

    @classmethod
    def load(cls, path: str | Path) -> "SceneSet":
        with np.load(path) as data:
            return cls(data["images"], data["instance_maps"], data["labels"])


def generate_scene_set(num_scenes: int, seed: int | Sequence[int], size: int = 256,
                       classes: Sequence[int] | None = None, max_objects: int = 6, progress: bool = False,
                       min_objects: int = 1, cluster_spread: float | None = None) -> SceneSet:
    """`num_scenes` scenes from `seed` (an int or a tuple of ints: numpy's SeedSequence entropy, so
    (run_seed, stream) pairs give independent streams); the same arguments give the same arrays.
    `min_objects`, `cluster_spread`: as for `generate_scene`."""
    rng = np.random.default_rng(seed)
    images = np.zeros((num_scenes, size, size, 3), dtype=np.uint8)
    maps = np.zeros((num_scenes, size, size), dtype=np.uint8)
    labels = np.full((num_scenes, max_objects), -1, dtype=np.int64)
    for i in tqdm(range(num_scenes), desc=f"scenes (seed {seed})", disable=not progress):
        scene = generate_scene(rng, size=size, classes=classes, min_objects=min_objects, max_objects=max_objects,
                               cluster_spread=cluster_spread)
        images[i], maps[i] = scene.image, scene.instance_map
        labels[i, : len(scene.labels)] = scene.labels
    return SceneSet(images, maps, labels)
