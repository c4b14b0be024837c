"""An RViz clicked point (a 3D point in any TF frame) as a pixel of the colour camera."""
from __future__ import annotations

from typing import Any

from geometry_msgs.msg import Point, PointStamped

from .camera_geometry import ProjectionError, check_image_size, project_to_pixel


class ClickedPointProjector:
    def __init__(self, node: Any) -> None:
        self.node = node
        self._tf_buffer: Any = None
        self._tf_listener: Any = None

    def to_pixel(self, msg: PointStamped, camera_info: Any, image_frame_id: str,
                 image_size: tuple[int, int] | None = None) -> tuple[float, float]:
        """The pixel of the latest colour image (of `image_size`, width x height, when one arrived)
        that the clicked point projects to; ProjectionError says why there is none."""
        if camera_info is None:
            raise ProjectionError("no camera_info received yet: cannot project the clicked point")
        if image_size is not None:
            check_image_size(camera_info, *image_size)
        camera_frame = camera_info.header.frame_id or image_frame_id
        point = msg.point
        if msg.header.frame_id and camera_frame and msg.header.frame_id != camera_frame:
            point = self._transform_point(msg, camera_frame)
        return project_to_pixel(point.x, point.y, point.z, camera_info)

    def _transform_point(self, msg: PointStamped, target_frame: str) -> Point:
        try:
            import tf2_geometry_msgs  # noqa: F401 - registers PointStamped with tf2
            from tf2_ros import Buffer, TransformListener
        except ImportError:
            raise ProjectionError(
                f"clicked point is in frame '{msg.header.frame_id}', the camera is '{target_frame}', and tf2_ros "
                f"is not installed: publish the point in '{target_frame}' or install tf2_ros") from None
        if self._tf_buffer is None:
            self._tf_buffer = Buffer()
            self._tf_listener = TransformListener(self._tf_buffer, self.node)
        try:
            return self._tf_buffer.transform(msg, target_frame).point
        except Exception as error:  # noqa: BLE001 - tf2 raises several unrelated types
            raise ProjectionError(f"cannot transform the clicked point from '{msg.header.frame_id}' to "
                                  f"'{target_frame}': {error}") from None
