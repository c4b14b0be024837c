"""One frame's instances as vision_msgs/Detection2DArray, where vision_msgs is installed.

One detection per instance, in the order of InstanceMaskArray.instances: id = the instance's track id
(InstanceMask.id, "7") when it is tracked, else "index-<i>" with i its index in the frame (the
`instance_ids` pixel value minus 1), so that the two kinds never collide; results[0].hypothesis =
(label, score); bbox = the mask's box (InstanceMask.roi), centre in pixel coordinates of the box's
edges, so a box from x0 to x1 (exclusive) has centre (x0 + x1) / 2 and size_x = x1 - x0. Written for
the vision_msgs 4.x layout (ROS 2 Humble and later).
"""
from __future__ import annotations

from typing import Any, Sequence

from .engine import InstanceResult

try:  # optional: only where vision_msgs is installed (not on PyPI)
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:  # pragma: no cover - exercised where vision_msgs exists
    Detection2D = Detection2DArray = ObjectHypothesisWithPose = None


UNTRACKED_ID_PREFIX = "index-"


def detection_id(result: InstanceResult, index: int) -> str:
    """The track id ("7") for a tracked instance, else "index-<index in the frame>": track ids count
    from 1 and indices from 0, so bare numbers would give a track and an untracked instance one id."""
    return str(result.track_id) if result.track_id else f"{UNTRACKED_ID_PREFIX}{index}"


def detections_2d(instances: Sequence[InstanceResult], header: Any) -> Any:
    """vision_msgs/Detection2DArray for one frame's instances; None where vision_msgs is not installed."""
    if Detection2DArray is None:
        return None
    msg = Detection2DArray(header=header)
    for index, result in enumerate(instances):
        prediction = result.prediction
        # A box of None (an empty mask; the engine answers those as failures) is an empty box at 0, 0.
        x0, y0, x1, y1 = (int(v) for v in prediction.box) if prediction.box is not None else (0, 0, 0, 0)
        detection = Detection2D(header=header, id=detection_id(result, index))
        detection.bbox.center.position.x = (x0 + x1) / 2.0
        detection.bbox.center.position.y = (y0 + y1) / 2.0
        detection.bbox.size_x, detection.bbox.size_y = float(x1 - x0), float(y1 - y0)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = prediction.label
        hypothesis.hypothesis.score = float(prediction.score)
        detection.results.append(hypothesis)
        msg.detections.append(detection)
    return msg
