"""Labels for RViz: one text marker per instance, on the ray through the mask's centre.

Without depth the distance is unknown, so labels sit at `label_depth` metres; the 3D instances
(with depth) place them at the object itself.
"""
from __future__ import annotations

from typing import Any

from visualization_msgs.msg import Marker, MarkerArray

from .camera_geometry import ProjectionError, check_image_size, pixel_ray
from .engine import Answer


def label_markers(answer: Answer, camera_info: Any, header: Any, label_depth: float = 1.0) -> MarkerArray:
    markers = MarkerArray()
    if answer.frame is not None:
        height, width = answer.frame.rgb.shape[:2]
        try:
            check_image_size(camera_info, width, height)  # another camera's calibration places nothing right
        except ProjectionError:
            return markers
    clear = Marker(header=header, action=Marker.DELETEALL, ns="ovsam_labels")
    markers.markers.append(clear)
    for index, result in enumerate(answer.instances):
        prediction = result.prediction
        x0, y0, x1, y1 = prediction.box
        try:
            # The middle pixel of the box (x1, y1 exclusive), in the pixel-centre coordinates of K and of
            # the 3D ray table, where pixel u spans u - 0.5 .. u + 0.5.
            x, y, z = pixel_ray((x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0, camera_info, label_depth)
        except ProjectionError:
            return MarkerArray()
        marker = Marker(header=header, ns="ovsam_labels", id=index, type=Marker.TEXT_VIEW_FACING,
                        action=Marker.ADD, text=f"{prediction.label} {prediction.score:.2f}")
        marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = x, y, z
        marker.pose.orientation.w = 1.0
        marker.scale.z = 0.05
        marker.color.r = marker.color.g = marker.color.b = marker.color.a = 1.0
        markers.markers.append(marker)
    return markers
