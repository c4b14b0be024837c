"""Pinhole geometry from sensor_msgs/CameraInfo: 3D points in the optical frame <-> pixels."""
from __future__ import annotations

import math
from typing import Any


class ProjectionError(ValueError):
    pass


def intrinsics(camera_info: Any) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) from CameraInfo.k; raises ProjectionError for an uncalibrated camera."""
    k = list(camera_info.k)
    fx, fy, cx, cy = float(k[0]), float(k[4]), float(k[2]), float(k[5])
    if not (fx > 0 and fy > 0 and all(math.isfinite(v) for v in (fx, fy, cx, cy))):
        raise ProjectionError("camera_info has no valid intrinsics (K is zero or not finite)")
    return fx, fy, cx, cy


def project_to_pixel(x: float, y: float, z: float, camera_info: Any) -> tuple[float, float]:
    """A point in the camera's optical frame (z forward, x right, y down) -> pixel (u, v)."""
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise ProjectionError(f"point ({x}, {y}, {z}) is not finite")
    if z <= 0:
        raise ProjectionError(f"point ({x:.3f}, {y:.3f}, {z:.3f}) is behind the camera (z <= 0)")
    fx, fy, cx, cy = intrinsics(camera_info)
    return fx * x / z + cx, fy * y / z + cy


def pixel_ray(u: float, v: float, camera_info: Any, depth: float = 1.0) -> tuple[float, float, float]:
    """The 3D point at `depth` along the ray through pixel (u, v)."""
    fx, fy, cx, cy = intrinsics(camera_info)
    return (u - cx) / fx * depth, (v - cy) / fy * depth, depth
