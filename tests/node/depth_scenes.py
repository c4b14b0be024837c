"""Ray-cast depth images of known geometry (a box and a sphere in front of a wall) for the 3D tests.

Depth comes from exact ray/shape intersections, so the expected answers (object poses, sizes, the
mean of the visible surface) are known independently of the code under test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT = 320, 240
FX = FY = 300.0
CX, CY = 159.5, 119.5
WALL_Z = 1.6


def yaw_about_vertical(angle_rad: float) -> np.ndarray:
    """Rotation about the optical frame's y axis (vertical for a level camera)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True)
class Box:
    center: tuple[float, float, float]
    size: tuple[float, float, float]       # along the box's own axes
    rotation: np.ndarray                   # columns: box axes in the camera frame


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float


@dataclass
class RenderedScene:
    depth: np.ndarray       # (H, W) float64 metres; the wall fills the background
    object_id: np.ndarray   # (H, W) int: 0 wall, i + 1 for objects[i]
    rays: np.ndarray        # (H, W, 3) ray through each pixel with z = 1

    def mask(self, index: int) -> np.ndarray:
        return self.object_id == index + 1

    def surface_points(self, index: int) -> np.ndarray:
        """The true visible-surface points of objects[index] (one per pixel)."""
        mask = self.mask(index)
        return self.rays[mask] * self.depth[mask][:, None]


def camera_rays(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([(u - CX) / FX, (v - CY) / FY, np.ones_like(u)], axis=-1)


def hit_sphere(rays: np.ndarray, sphere: Sphere) -> np.ndarray:
    centre = np.asarray(sphere.center)
    a = np.einsum("hwc,hwc->hw", rays, rays)
    b = rays @ centre
    disc = b * b - a * (centre @ centre - sphere.radius ** 2)
    t = (b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc >= 0) & (t > 0), t, np.inf)


def hit_box(rays: np.ndarray, box: Box) -> np.ndarray:
    half = np.asarray(box.size) / 2.0
    origin = box.rotation.T @ (-np.asarray(box.center))
    direction = rays @ box.rotation  # rows: rays in the box frame
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - origin) / direction, (half - origin) / direction
    near = np.nanmax(np.minimum(t1, t2), axis=-1)
    far = np.nanmin(np.maximum(t1, t2), axis=-1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def render(objects: list, width: int = WIDTH, height: int = HEIGHT, wall_z: float = WALL_Z) -> RenderedScene:
    rays = camera_rays(width, height)
    hits = [hit_box(rays, o) if isinstance(o, Box) else hit_sphere(rays, o) for o in objects]
    stack = np.stack([np.full((height, width), wall_z)] + hits)
    object_id = np.argmin(stack, axis=0)
    depth = np.take_along_axis(stack, object_id[None], axis=0)[0]  # ray z = 1, so t is the depth
    return RenderedScene(depth=depth, object_id=object_id, rays=rays)


def default_scene() -> tuple[list, RenderedScene]:
    """A box on the right, turned 30 degrees, and a sphere on the left, both about 1 m away and
    below a level camera (so the box's top and two of its sides are seen)."""
    objects = [
        Box(center=(0.12, 0.12, 1.0), size=(0.20, 0.12, 0.10), rotation=yaw_about_vertical(math.radians(30))),
        Sphere(center=(-0.15, 0.05, 1.0), radius=0.08),
    ]
    return objects, render(objects)
