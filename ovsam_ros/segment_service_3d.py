"""3D answers for a Segment service call: placed with the depth sent in the request, or else with the
depth the node received on its `depth` topic nearest to the image's stamp."""
from __future__ import annotations

from typing import Any

from .camera_geometry import ProjectionError, intrinsics
from .depth_fusion import DepthFusion, Fusion3D
from .depth_image import DepthError, depth_from_msg
from .engine import Answer
from .image_conversion import ImageConversionError


def has_calibration(camera_info: Any) -> bool:
    """Whether a request's CameraInfo can place points: `camera_geometry.intrinsics` accepts its K."""
    if camera_info is None or len(camera_info.k) != 9:
        return False
    try:
        intrinsics(camera_info)
    except ProjectionError:
        return False
    return True


def locate_segment_answer(answer: Answer, request_depth: Any, request_camera_info: Any, node_depth: DepthFusion,
                          node_camera_info: Any, tolerance_s: float) -> Fusion3D | None:
    """The answer's instances in 3D; None when no depth exists for it (none sent, none received).

    Depth sent with the request belongs to the request's image whatever its stamp, so it is used
    without stamp matching; a depth image that cannot be read fails every instance with the reason."""
    if answer.frame is None:
        return None
    camera_info = request_camera_info if has_calibration(request_camera_info) else node_camera_info
    if int(request_depth.width) == 0:
        if not node_depth.buffer.received:
            return None
        return node_depth.locate(answer.frame, answer.instances, camera_info, tolerance_s)
    try:
        depth = depth_from_msg(request_depth)
    except (DepthError, ImageConversionError) as error:
        return node_depth.unplaced(answer.frame, answer.instances, f"the request's depth image is unusable: {error}")
    return node_depth.locate_with(depth, answer.frame, answer.instances, camera_info)
