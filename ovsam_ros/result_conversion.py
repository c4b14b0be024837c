"""Engine answers -> ovsam_ros/InstanceMaskArray (masks cropped to their tight box, mono8)."""
from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from ovsam_ros.msg import InstanceMask, InstanceMaskArray

from .engine import Answer, InstanceResult
from .image_conversion import array_to_image
from .label_images import mask_in_box


def instance_to_msg(result: InstanceResult, header: Header) -> InstanceMask:
    prediction = result.prediction
    x0, y0, crop = mask_in_box(prediction)
    height, width = crop.shape
    mask = array_to_image(crop.astype(np.uint8) * 255, "mono8", header=header)
    return InstanceMask(
        id=int(result.track_id),
        prompt_id=prediction.prompt_id,
        label=prediction.label,
        class_index=int(prediction.class_index),
        score=float(prediction.score),
        mask_score=float(prediction.mask_score),
        top_labels=list(prediction.top_labels),
        top_scores=[float(s) for s in prediction.top_scores],
        roi=RegionOfInterest(x_offset=x0, y_offset=y0, width=width, height=height, do_rectify=False),
        mask=mask,
    )


def answer_to_msg(answer: Answer, fallback_header: Any = None) -> InstanceMaskArray:
    frame = answer.frame
    header = frame.header if frame is not None and frame.header is not None else (fallback_header or Header())
    msg = InstanceMaskArray(header=header)
    if frame is not None:
        msg.image_height, msg.image_width = frame.height, frame.width
    msg.instances = [instance_to_msg(result, header) for result in answer.instances]
    msg.failed_prompt_ids = [failure.prompt_id for failure in answer.failures]
    msg.failure_reasons = [failure.reason for failure in answer.failures]
    return msg
