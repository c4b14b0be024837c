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
    if not are_intrinsics(fx, fy, cx, cy):
        raise ProjectionError("camera_info has no valid intrinsics (K is zero or not finite)")
    return fx, fy, cx, cy


def are_intrinsics(fx: float, fy: float, cx: float, cy: float) -> bool:
    """Whether the numbers are a calibrated camera: positive focal lengths, everything finite."""
    return fx > 0 and fy > 0 and all(math.isfinite(v) for v in (fx, fy, cx, cy))


def check_image_size(camera_info: Any, width: int, height: int) -> None:
    """Raises ProjectionError when `camera_info` is for images of another size than width x height
    (a CameraInfo of size 0 x 0 does not say, and passes)."""
    info_size = (int(camera_info.width), int(camera_info.height))
    if info_size != (0, 0) and info_size != (width, height):
        raise ProjectionError(f"camera_info is for {info_size[0]}x{info_size[1]} images but the colour image "
                              f"is {width}x{height}")


def distortion(camera_info: Any) -> tuple[str, np.ndarray]:
    """(model, coefficients) of a CameraInfo's lens distortion (D may be empty)."""
    model = str(getattr(camera_info, "distortion_model", "") or "")
    return model, np.asarray([float(v) for v in getattr(camera_info, "d", ())], dtype=np.float64)


def is_distorted(coefficients: np.ndarray) -> bool:
    """Whether coefficients describe a distortion at all: empty or all-zero D is a pinhole camera."""
    return bool(coefficients.size) and bool(np.any(coefficients))


def project_to_pixel(x: float, y: float, z: float, camera_info: Any) -> tuple[float, float]:
    """A point in the camera's optical frame (z forward, x right, y down) -> pixel (u, v), through the
    lens distortion of `camera_info` (the pixel the camera images the point at)."""
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise ProjectionError(f"point ({x}, {y}, {z}) is not finite")
    if z <= 0:
        raise ProjectionError(f"point ({x:.3f}, {y:.3f}, {z:.3f}) is behind the camera (z <= 0)")
    fx, fy, cx, cy = intrinsics(camera_info)
    model, coefficients = distortion(camera_info)
    if not is_distorted(coefficients):
        return fx * x / z + cx, fy * y / z + cy
    u, v = distort_rays(np.array([[x / z, y / z]]), fx, fy, cx, cy, model, coefficients)[0]
    if not (math.isfinite(u) and math.isfinite(v)):
        raise ProjectionError(f"point ({x:.3f}, {y:.3f}, {z:.3f}) does not project through this lens model")
    return float(u), float(v)


def pixel_ray(u: float, v: float, camera_info: Any, depth: float = 1.0) -> tuple[float, float, float]:
    """The 3D point at `depth` along the ray that pixel (u, v) sees, lens distortion undone (as the
    3D instances' ray table does)."""
    fx, fy, cx, cy = intrinsics(camera_info)
    model, coefficients = distortion(camera_info)
    if not is_distorted(coefficients):
        return (u - cx) / fx * depth, (v - cy) / fy * depth, depth
    x, y = undistort_pixels(np.array([[u, v]]), fx, fy, cx, cy, model, coefficients)[0]
    return float(x) * depth, float(y) * depth, depth


def undistort_pixels(pixels: np.ndarray, fx: float, fy: float, cx: float, cy: float, model: str,
                     coefficients: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) -> the normalised rays (x, y) they see, lens distortion undone; raises
    ProjectionError for coefficients OpenCV cannot invert."""
    import cv2

    points = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
    if _is_fisheye(model, coefficients):
        rays = cv2.fisheye.undistortPoints(points, _camera_matrix(fx, fy, cx, cy), coefficients, criteria=criteria)
    else:
        rays = cv2.undistortPoints(points, _camera_matrix(fx, fy, cx, cy), coefficients, criteria=criteria)
    return rays.reshape(-1, 2)


def distort_rays(rays: np.ndarray, fx: float, fy: float, cx: float, cy: float, model: str,
                 coefficients: np.ndarray) -> np.ndarray:
    """Normalised rays (N, 2) -> the pixels (N, 2) the lens images them at: `undistort_pixels` inverted."""
    import cv2

    points = np.concatenate([np.asarray(rays, dtype=np.float64).reshape(-1, 2), np.ones((len(rays), 1))], axis=1)
    still = np.zeros(3)
    if _is_fisheye(model, coefficients):
        pixels, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), still, still, _camera_matrix(fx, fy, cx, cy),
                                              coefficients)
    else:
        pixels, _ = cv2.projectPoints(points, still, still, _camera_matrix(fx, fy, cx, cy), coefficients)
    return pixels.reshape(-1, 2)


def _camera_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _is_fisheye(model: str, coefficients: np.ndarray) -> bool:
    """Which OpenCV model the coefficients are for; raises ProjectionError for ones it cannot use."""
    if not np.all(np.isfinite(coefficients)):
        raise ProjectionError("distortion coefficients are not finite")
    if model in FISHEYE_DISTORTION_MODELS:
        if coefficients.size != 4:
            raise ProjectionError(f"the {model} model needs 4 distortion coefficients, got {coefficients.size}")
        return True
    if model in PINHOLE_DISTORTION_MODELS or model == "":
        if coefficients.size not in (4, 5, 8, 12, 14):
            raise ProjectionError(f"{coefficients.size} distortion coefficients; OpenCV takes 4, 5, 8, 12 or 14")
        return False
    allowed = ", ".join(PINHOLE_DISTORTION_MODELS + FISHEYE_DISTORTION_MODELS)
    raise ProjectionError(f"distortion model '{model}' is not supported ({allowed}, or all-zero coefficients)")
