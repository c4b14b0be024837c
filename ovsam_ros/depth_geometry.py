"""Per-instance 3D geometry from a depth image registered to the colour image: numpy (and OpenCV for
lens distortion and convex hulls), no ROS.

For each instance: the mask's pixels with valid depth are back-projected through a per-pixel ray
table, points far from the object's depth cluster are trimmed, and what remains gives the centroid,
the axis-aligned box, an oriented box and the point count. Work per instance is limited to the
mask's bounding box, so twenty instances on a 640x480 image cost a few milliseconds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ovsam_model.mask_box import tight_box

from .camera_geometry import ProjectionError, are_intrinsics, is_distorted, undistort_pixels

TRIM_MODES = ("cluster", "percentile", "none")
BOX_ORIENTATIONS = ("upright", "pca")
# Near-equal rectangle areas are decided by how closely the points hug the sides (see _upright_box).
AREA_TIE_TOLERANCE = 0.02
CLOSENESS_SAMPLE = 256
# Directions along which extreme footprint points are collected as hull candidates: a box corner is
# the extreme along a quarter of all directions, so a coarse set finds every corner.
_HULL_ANGLES = np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)
_HULL_DIRECTIONS = np.stack([np.cos(_HULL_ANGLES), np.sin(_HULL_ANGLES)], axis=1).astype(np.float32)


class GeometryError(ValueError):
    """An instance cannot be placed in 3D (e.g. too few valid depth pixels); the text says why."""


@dataclass(frozen=True)
class GeometrySettings:
    min_depth_m: float = 0.1          # depth outside [min, max] is invalid (sensor blind zone, far noise)
    max_depth_m: float = 10.0
    trim: str = "cluster"             # cluster: keep the largest depth cluster; percentile: keep [lo, hi]
    cluster_gap_m: float = 0.05       # an empty depth band this wide separates two clusters
    percentiles: tuple[float, float] = (2.0, 98.0)
    box_orientation: str = "upright"  # upright: turns about `up` only; pca: full 3D principal axes
    up: tuple[float, float, float] = (0.0, -1.0, 0.0)  # gravity's opposite in the optical frame (level camera)
    min_points: int = 10

    def validate(self) -> None:
        if not 0.0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(f"depth range [{self.min_depth_m}, {self.max_depth_m}] m is empty or negative")
        if self.trim not in TRIM_MODES:
            raise ValueError(f"trim '{self.trim}' is unknown; allowed: {', '.join(TRIM_MODES)}")
        if self.box_orientation not in BOX_ORIENTATIONS:
            raise ValueError(f"box_orientation '{self.box_orientation}' is unknown; "
                             f"allowed: {', '.join(BOX_ORIENTATIONS)}")
        if not self.cluster_gap_m > 0:
            raise ValueError(f"cluster_gap_m must be positive, got {self.cluster_gap_m}")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if not np.linalg.norm(self.up) > 0:
            raise ValueError("up must be a non-zero vector")
        if self.min_points < 1:
            raise ValueError(f"min_points must be at least 1, got {self.min_points}")


@dataclass(frozen=True)
class RayTable:
    """For every pixel (u, v) the ray (x, y, 1) it sees, so a pixel at depth z is the point (x z, y z, z).

    Lens distortion is undone once per calibration here instead of once per point.
    """

    x: np.ndarray  # (H, W) float32
    y: np.ndarray  # (H, W) float32

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape

    @classmethod
    def from_calibration(cls, width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                         distortion_model: str = "", distortion: tuple[float, ...] | list[float] = ()) -> "RayTable":
        if width < 1 or height < 1:
            raise GeometryError(f"camera size {width}x{height} is empty")
        if not are_intrinsics(fx, fy, cx, cy):
            raise GeometryError(f"intrinsics fx={fx} fy={fy} cx={cx} cy={cy} are not a calibrated camera")
        coefficients = np.asarray(list(distortion), dtype=np.float64)
        if not is_distorted(coefficients):
            columns = ((np.arange(width, dtype=np.float64) - cx) / fx).astype(np.float32)
            rows = ((np.arange(height, dtype=np.float64) - cy) / fy).astype(np.float32)
            return cls(np.broadcast_to(columns, (height, width)).copy(),
                       np.broadcast_to(rows[:, None], (height, width)).copy())
        return cls(*_undistorted_rays(width, height, fx, fy, cx, cy, distortion_model, coefficients))


def _undistorted_rays(width: int, height: int, fx: float, fy: float, cx: float, cy: float, model: str,
                      coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:height, 0:width]
    pixels = np.stack([u.ravel(), v.ravel()], axis=1)
    try:
        rays = undistort_pixels(pixels, fx, fy, cx, cy, model, coefficients)
    except ProjectionError as error:
        raise GeometryError(str(error)) from None
    rays = rays.reshape(height, width, 2).astype(np.float32)
    return np.ascontiguousarray(rays[..., 0]), np.ascontiguousarray(rays[..., 1])


@dataclass(frozen=True)
class OrientedBox:
    center: np.ndarray    # (3,)
    rotation: np.ndarray  # (3, 3), columns = the box axes in the camera frame, det +1
    size: np.ndarray      # (3,) edge lengths along those axes

    def quaternion(self) -> tuple[float, float, float, float]:
        """The rotation as (x, y, z, w), as geometry_msgs/Quaternion wants it."""
        return rotation_to_quaternion(self.rotation)

    def corners(self) -> np.ndarray:
        """(8, 3) corners in the camera frame; bit i of the row index picks the + side of axis i."""
        signs = np.array([[(i >> axis & 1) * 2 - 1 for axis in range(3)] for i in range(8)], dtype=np.float64)
        return self.center + (signs * (self.size / 2.0)) @ self.rotation.T


@dataclass
class InstanceGeometry:
    points: np.ndarray       # (N, 3) float32, the kept points in the camera frame
    pixel_index: np.ndarray  # (N,) flat index (v * W + u) of each point's pixel
    mask_pixels: int         # pixels of the mask
    depth_pixels: int        # of those, pixels with valid depth (before trimming)
    centroid: np.ndarray = field(default_factory=lambda: np.zeros(3))
    aabb_min: np.ndarray = field(default_factory=lambda: np.zeros(3))
    aabb_max: np.ndarray = field(default_factory=lambda: np.zeros(3))
    box: OrientedBox | None = None

    @property
    def valid_points(self) -> int:
        return int(len(self.points))


class DepthScene:
    """One depth image registered to the colour image, ready for any number of instances.

    `depth` is metres (float) or integer units of `metres_per_unit` (16UC1: 0.001). It is used as
    received: only the pixels under masks are converted, which spares a full-image conversion.
    Zero depth is never valid (no measurement), whatever min_depth_m says.
    """

    def __init__(self, depth: np.ndarray, rays: RayTable, settings: GeometrySettings | None = None,
                 metres_per_unit: float = 1.0) -> None:
        self.settings = settings or GeometrySettings()
        self.settings.validate()
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise GeometryError(f"depth must be a 2D image, got shape {depth.shape}")
        if depth.shape != rays.shape:
            raise GeometryError(f"depth image {depth.shape[1]}x{depth.shape[0]} does not match the camera's "
                                f"{rays.shape[1]}x{rays.shape[0]}")
        if not metres_per_unit > 0:
            raise GeometryError(f"metres_per_unit must be positive, got {metres_per_unit}")
        self.rays = rays
        self.metres_per_unit = float(metres_per_unit)
        low_m, high_m = self.settings.min_depth_m, self.settings.max_depth_m
        if np.issubdtype(depth.dtype, np.integer):
            self.depth = np.ascontiguousarray(depth)
            limit = np.iinfo(depth.dtype).max
            low = max(1, math.ceil(low_m / metres_per_unit - 1e-9))
            high = min(limit, math.floor(high_m / metres_per_unit + 1e-9))
            self.valid = (self.depth >= low) & (self.depth <= high)
        else:
            self.depth = np.ascontiguousarray(depth, dtype=np.float32)
            # NaN fails both comparisons and infinities fail one, so this also drops non-finite depth.
            with np.errstate(invalid="ignore"):
                self.valid = ((self.depth >= max(low_m / metres_per_unit, np.finfo(np.float32).tiny))
                              & (self.depth <= high_m / metres_per_unit))
        self._pixel_index = _pixel_index_image(*self.depth.shape)
        self._up_basis = horizontal_basis(tuple(float(v) for v in self.settings.up))

    @property
    def shape(self) -> tuple[int, int]:
        return self.depth.shape

    def instance(self, mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> InstanceGeometry:
        """Place one mask in 3D. `box` (x0, y0, x1, y1, exclusive ends) must enclose the mask; it only
        limits the work. Raises GeometryError when too few valid points remain."""
        mask = np.asarray(mask)
        if mask.shape != self.shape:
            raise GeometryError(f"mask {mask.shape[1]}x{mask.shape[0]} does not match the depth image "
                                f"{self.shape[1]}x{self.shape[0]}")
        x0, y0, x1, y1 = self._window(mask, box)
        window = mask[y0:y1, x0:x1].astype(bool, copy=False)
        mask_pixels = int(np.count_nonzero(window))
        pixel_index = self._pixel_index[y0:y1, x0:x1][window & self.valid[y0:y1, x0:x1]]
        z = self.depth.reshape(-1)[pixel_index].astype(np.float32, copy=False)
        if self.metres_per_unit != 1.0:
            z *= np.float32(self.metres_per_unit)
        depth_pixels = int(z.size)
        settings = self.settings
        if depth_pixels < settings.min_points:
            raise GeometryError(f"only {depth_pixels} of {mask_pixels} mask pixels have valid depth in "
                                f"[{settings.min_depth_m:g}, {settings.max_depth_m:g}] m "
                                f"(at least {settings.min_points} needed)")
        keep = trim_depth_outliers(z, settings)
        if keep is not None:
            pixel_index, z = pixel_index[keep], z[keep]
        if z.size < settings.min_points:
            raise GeometryError(f"only {z.size} points remain after trimming depth outliers "
                                f"(at least {settings.min_points} needed)")
        # Coordinates are kept as three contiguous rows: reductions over rows are many times faster
        # than over the columns of an (N, 3) array; `points` is the (N, 3) view of them.
        columns = np.empty((3, z.size), dtype=np.float32)
        np.multiply(self.rays.x.reshape(-1)[pixel_index], z, out=columns[0])
        np.multiply(self.rays.y.reshape(-1)[pixel_index], z, out=columns[1])
        columns[2] = z
        centroid = columns.mean(axis=1, dtype=np.float64)
        if settings.box_orientation == "pca":
            box = _principal_axes_box(columns, centroid)
        else:
            box = _upright_box(columns, centroid, self._up_basis)
        return InstanceGeometry(points=columns.T, pixel_index=pixel_index, mask_pixels=mask_pixels,
                                depth_pixels=depth_pixels, centroid=centroid,
                                aabb_min=columns.min(axis=1).astype(np.float64),
                                aabb_max=columns.max(axis=1).astype(np.float64), box=box)

    def _window(self, mask: np.ndarray, box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
        height, width = self.shape
        if box is None:
            return tight_box(mask) or (0, 0, 0, 0)
        x0, y0, x1, y1 = (int(v) for v in box)
        return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


@lru_cache(maxsize=4)
def _pixel_index_image(height: int, width: int) -> np.ndarray:
    """(H, W) image of flat pixel indices: selecting with a mask window gives global indices directly."""
    index = np.arange(height * width, dtype=np.int64).reshape(height, width)
    index.flags.writeable = False
    return index


def trim_depth_outliers(z: np.ndarray, settings: GeometrySettings) -> np.ndarray | None:
    """Boolean keep-mask over `z`, or None to keep everything.

    Masks bleed over object borders onto whatever lies behind; those pixels sit at a clearly
    different depth. `cluster` bins depth into cluster_gap_m bands and keeps the largest run of
    occupied bands (vectorised 1D clustering); `percentile` keeps the depth quantile range.
    """
    if settings.trim == "none" or z.size == 0:
        return None
    if settings.trim == "percentile":
        low, high = np.percentile(z, settings.percentiles)
        return (z >= low) & (z <= high)
    bands = ((z - z.min()) * np.float32(1.0 / settings.cluster_gap_m)).astype(np.intp)
    counts = np.bincount(bands)
    occupied = counts > 0
    starts = occupied.copy()
    starts[1:] &= ~occupied[:-1]
    run = np.cumsum(starts) * occupied  # 0 on empty bands, 1.. on each run of occupied bands
    if run[-1] == 1:  # the farthest band is occupied, so run[-1] is the number of runs
        return None
    run_sizes = np.bincount(run, weights=counts)
    run_sizes[0] = -1
    return run[bands] == int(np.argmax(run_sizes))


def principal_axes_box(points: np.ndarray, centroid: np.ndarray) -> OrientedBox:
    """Box along the principal axes of (N, 3) points (largest spread first), fully 3D."""
    return _principal_axes_box(np.ascontiguousarray(np.asarray(points).T), np.asarray(centroid, np.float64))


def upright_box(points: np.ndarray, centroid: np.ndarray, up: np.ndarray) -> OrientedBox:
    """Box of (N, 3) points with one axis along `up`, turned about it to the smallest rectangle
    around the points' footprint (their projection onto the plane normal to `up`)."""
    return _upright_box(np.ascontiguousarray(np.asarray(points).T), np.asarray(centroid, np.float64),
                        horizontal_basis(tuple(float(v) for v in up)))


def _principal_axes_box(columns: np.ndarray, centroid: np.ndarray) -> OrientedBox:
    centred = columns - centroid[:, None]
    _, vectors = np.linalg.eigh(centred @ centred.T / max(centred.shape[1], 1))
    axes = vectors[:, ::-1].copy()
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1.0
    projected = axes.T @ centred
    low, high = projected.min(axis=1), projected.max(axis=1)
    return OrientedBox(center=centroid + axes @ ((low + high) / 2.0), rotation=axes, size=high - low)


@lru_cache(maxsize=8)
def horizontal_basis(up: tuple[float, float, float]) -> np.ndarray:
    """(3, 3) rows (first, second, up): a right-handed frame whose first two rows span the
    horizontal plane of `up`."""
    up_vector = np.asarray(up, dtype=np.float64)
    up_vector = up_vector / np.linalg.norm(up_vector)
    reference = np.array([0.0, 0.0, 1.0]) if abs(up_vector[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    first = np.cross(up_vector, reference)
    first /= np.linalg.norm(first)
    basis = np.stack([first, np.cross(up_vector, first), up_vector])
    basis.flags.writeable = False
    return basis


def _upright_box(columns: np.ndarray, centroid: np.ndarray, basis: np.ndarray) -> OrientedBox:
    """The smallest rectangle has a side on an edge of the footprint's convex hull, so only hull
    edge directions are tried. When two adjacent faces of a box are seen, the hull is a right
    triangle, whose hypotenuse gives a rectangle of the same area as the true one: near-ties go to
    the rectangle whose sides the points lie closest to.
    """
    import cv2

    # np.dot rather than @: several times faster for these small-by-long float32 products here.
    local = np.dot(basis.astype(np.float32), columns) - np.dot(basis, centroid).astype(np.float32)[:, None]  # (3, N)
    footprint = local[:2]
    # The hull's vertices are the points farthest along some direction; collecting those along many
    # directions first keeps OpenCV's hull (a sort) off thousands of points.
    extremes = np.unique(np.argmax(np.dot(_HULL_DIRECTIONS, footprint), axis=1))
    hull = cv2.convexHull(np.ascontiguousarray(footprint[:, extremes].T)).reshape(-1, 2).astype(np.float64)
    edges = np.concatenate((hull[1:], hull[:1])) - hull
    angles = np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2.0)
    cos, sin = np.cos(angles), np.sin(angles)
    directions, normals = np.array((cos, sin)), np.array((-sin, cos))  # (2, E) each
    along, across = hull @ directions, hull @ normals                  # (H, E)
    low_a, high_a, low_b, high_b = along.min(0), along.max(0), across.min(0), across.max(0)
    areas = (high_a - low_a) * (high_b - low_b)
    candidates = np.flatnonzero(areas <= areas.min() * (1.0 + AREA_TIE_TOLERANCE) + 1e-12)
    best = int(candidates[0])
    if candidates.size > 1:
        sample = footprint[:, :: max(1, footprint.shape[1] // CLOSENESS_SAMPLE)].T.astype(np.float64)
        a, b = sample @ directions[:, candidates], sample @ normals[:, candidates]  # (S, C)
        gaps = np.minimum(np.minimum(a - low_a[candidates], high_a[candidates] - a),
                          np.minimum(b - low_b[candidates], high_b[candidates] - b))
        best = int(candidates[int(np.argmin(gaps.mean(axis=0)))])
    c, s = float(cos[best]), float(sin[best])
    # The hull came from sampled directions: the extents are measured again on every point.
    along_all = np.dot(np.array(((c, s), (-s, c)), dtype=np.float32), footprint)
    low, high = along_all.min(axis=1).astype(np.float64), along_all.max(axis=1).astype(np.float64)
    lengths, middle = high - low, (high + low) / 2.0
    first, second, up = basis
    axis_a, axis_b = c * first + s * second, c * second - s * first
    if lengths[1] > lengths[0]:  # longer horizontal edge first; (b, -a, up) stays right-handed
        axis_a, axis_b, lengths, middle = axis_b, -axis_a, lengths[::-1], np.array([middle[1], -middle[0]])
    low_h, high_h = float(local[2].min()), float(local[2].max())
    center = centroid + middle[0] * axis_a + middle[1] * axis_b + (low_h + high_h) / 2.0 * up
    return OrientedBox(center=center, rotation=np.array((axis_a, axis_b, up)).T,
                       size=np.array([lengths[0], lengths[1], high_h - low_h]))


def rotation_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix -> unit quaternion (x, y, z, w), numerically stable for any angle."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    norm = math.sqrt(sum(v * v for v in q))
    return tuple(v / norm for v in q)  # type: ignore[return-value]
