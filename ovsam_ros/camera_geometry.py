"""Camera geometry from sensor_msgs/CameraInfo: 3D points in the optical frame <-> pixels, and the
lens distortion rule (which models and coefficients OpenCV can invert). numpy and OpenCV, no ROS."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

# Distortion models whose coefficients OpenCV can invert (sensor_msgs/CameraInfo names).
PINHOLE_DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")
FISHEYE_DISTORTION_MODELS = ("equidistant", "fisheye")


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


def undistort_pixels(pixels: np.ndarray, fx: float, fy: float, cx: float, cy: float, model: str,
                     coefficients: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) -> the normalised rays (x, y) they see, lens distortion undone; raises
    ProjectionError for coefficients OpenCV cannot invert."""
    import cv2

    if not np.all(np.isfinite(coefficients)):
        raise ProjectionError("distortion coefficients are not finite")
    camera = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    points = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
    if model in FISHEYE_DISTORTION_MODELS:
        if coefficients.size != 4:
            raise ProjectionError(f"the {model} model needs 4 distortion coefficients, got {coefficients.size}")
        rays = cv2.fisheye.undistortPoints(points, camera, coefficients, criteria=criteria)
    elif model in PINHOLE_DISTORTION_MODELS or model == "":
        if coefficients.size not in (4, 5, 8, 12, 14):
            raise ProjectionError(f"{coefficients.size} distortion coefficients; OpenCV takes 4, 5, 8, 12 or 14")
        rays = cv2.undistortPoints(points, camera, coefficients, criteria=criteria)
    else:
        allowed = ", ".join(PINHOLE_DISTORTION_MODELS + FISHEYE_DISTORTION_MODELS)
        raise ProjectionError(f"distortion model '{model}' is not supported ({allowed}, or all-zero coefficients)")
    return rays.reshape(-1, 2)
