"""Pairs depth images with colour frames and places an answer's instances in 3D, without ROS.

Depth is optional: a colour frame with no depth image within the stamp tolerance, or with a depth
image of another size (not registered to the colour camera), gets no 3D answer and a reason, never
a 3D answer computed from the wrong pixels.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

from .camera_geometry import ProjectionError, check_image_size, distortion, intrinsics
from .depth_geometry import DepthScene, GeometryError, GeometrySettings, InstanceGeometry, RayTable
from .depth_image import DepthImage
from .frame_buffer import format_stamp


class DepthUnavailable(LookupError):
    """No usable depth for a colour frame (none close enough in time, or not registered to it)."""


class DepthBuffer:
    """The most recent depth images by stamp. Thread-safe: the executor adds, the inference thread matches."""

    def __init__(self, capacity: int = 8) -> None:
        if capacity < 1:
            raise ValueError(f"depth buffer capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._images: OrderedDict[int, DepthImage] = OrderedDict()
        self._lock = threading.Lock()
        self.received = 0

    def add(self, depth: DepthImage) -> None:
        with self._lock:
            self._images.pop(depth.stamp_ns, None)
            self._images[depth.stamp_ns] = depth
            self.received += 1
            while len(self._images) > self._capacity:
                self._images.popitem(last=False)

    def match(self, stamp_ns: int, height: int, width: int, tolerance_s: float) -> DepthImage:
        """The depth image nearest in time to a colour frame, if within `tolerance_s` and of its size."""
        with self._lock:
            images = list(self._images.values())
        if not images:
            raise DepthUnavailable("no depth image received yet")
        nearest = min(images, key=lambda d: abs(d.stamp_ns - stamp_ns))
        offset_s = abs(nearest.stamp_ns - stamp_ns) / 1e9
        if offset_s > tolerance_s:
            raise DepthUnavailable(
                f"no depth image within {tolerance_s:.3f} s of the colour frame {format_stamp(stamp_ns)} "
                f"(nearest {format_stamp(nearest.stamp_ns)}, {offset_s:.3f} s away; depth_stamp_tolerance_s)")
        if (nearest.height, nearest.width) != (height, width):
            raise DepthUnavailable(
                f"depth image {nearest.width}x{nearest.height} does not match the colour image {width}x{height}: "
                f"publish depth registered to the colour camera (e.g. aligned_depth_to_color)")
        return nearest


@dataclass
class Located:
    """One instance of an answer placed in 3D."""

    index: int             # position in Answer.instances (= InstanceMaskArray.instances)
    result: Any            # the engine's InstanceResult
    geometry: InstanceGeometry


@dataclass(frozen=True)
class Failure3D:
    index: int
    prompt_id: str
    reason: str


@dataclass
class Fusion3D:
    """The 3D answer for one colour frame."""

    depth: DepthImage | None = None
    located: list[Located] = field(default_factory=list)
    failures: list[Failure3D] = field(default_factory=list)
    problem: str = ""      # why the whole frame got no 3D answer ("" when depth was paired)
    elapsed_ms: float = 0.0


class DepthFusion:
    """Recent depth images plus the ray table of the current calibration; answers -> Fusion3D."""

    def __init__(self, settings: GeometrySettings | None = None, capacity: int = 8) -> None:
        self.settings = settings or GeometrySettings()
        self.settings.validate()
        self.buffer = DepthBuffer(capacity)
        self._rays: tuple[tuple, RayTable] | None = None

    def add(self, depth: DepthImage) -> None:
        self.buffer.add(depth)

    def locate(self, frame: Any, instances: Sequence[Any], camera_info: Any, tolerance_s: float) -> Fusion3D:
        """Place every instance (InstanceResult with .prediction.mask/.box) of `frame` in 3D.

        Every instance ends up either in `located` or in `failures` with a reason."""
        try:
            depth = self.buffer.match(frame.stamp_ns, frame.height, frame.width, tolerance_s)
        except DepthUnavailable as error:
            return self.unplaced(frame, instances, str(error))
        return self.locate_with(depth, frame, instances, camera_info)

    def locate_with(self, depth: DepthImage, frame: Any, instances: Sequence[Any], camera_info: Any) -> Fusion3D:
        """As `locate`, with the depth image given (e.g. sent with a service request) instead of matched by stamp."""
        started = time.perf_counter()
        fusion = Fusion3D(depth=depth)
        try:
            if (depth.height, depth.width) != (frame.height, frame.width):
                raise DepthUnavailable(
                    f"depth image {depth.width}x{depth.height} does not match the colour image "
                    f"{frame.width}x{frame.height}: send depth registered to the colour camera")
            rays = self.rays_for(camera_info, frame.width, frame.height)
            scene = DepthScene(depth.raw, rays, self.settings, depth.metres_per_unit)
        except (DepthUnavailable, ProjectionError, GeometryError) as error:
            return self.unplaced(frame, instances, str(error), (time.perf_counter() - started) * 1e3)
        for index, result in enumerate(instances):
            prediction = result.prediction
            try:
                fusion.located.append(Located(index, result, scene.instance(prediction.mask, prediction.box)))
            except GeometryError as error:
                fusion.failures.append(Failure3D(index, prediction.prompt_id, str(error)))
        fusion.elapsed_ms = (time.perf_counter() - started) * 1e3
        return fusion

    @staticmethod
    def unplaced(frame: Any, instances: Sequence[Any], reason: str, elapsed_ms: float = 0.0) -> Fusion3D:
        """No 3D for the whole frame: every instance fails with the reason."""
        return Fusion3D(problem=f"no 3D for frame {format_stamp(frame.stamp_ns)}: {reason}",
                        failures=[Failure3D(i, r.prediction.prompt_id, reason) for i, r in enumerate(instances)],
                        elapsed_ms=elapsed_ms)

    def rays_for(self, camera_info: Any, width: int, height: int) -> RayTable:
        """The ray table of this calibration (rebuilt only when the calibration changes)."""
        if camera_info is None:
            raise ProjectionError("no camera_info received: 3D needs the colour camera's intrinsics")
        check_image_size(camera_info, width, height)
        fx, fy, cx, cy = intrinsics(camera_info)
        model, coefficients = distortion(camera_info)
        lens = tuple(coefficients.tolist())
        key = (width, height, fx, fy, cx, cy, model, lens)
        if self._rays is None or self._rays[0] != key:
            self._rays = (key, RayTable.from_calibration(width, height, fx, fy, cx, cy, model, lens))
        return self._rays[1]
