"""Messages -> PromptRequests: ROS prompts, clicks and vision_msgs detections (duck-typed here:
vision_msgs is not installable without a ROS install; the same attribute paths are read)."""
from types import SimpleNamespace as NS

import numpy as np
import pytest

from ovsam_ros.prompt_conversion import (PromptConversionError, click_request, request_from_prompt_msg,
                                         requests_from_detections)


def prompt_msg(**fields):
    defaults = dict(id="p", points=[], point_labels=[], box=[0.0, 0.0, 0.0, 0.0], track=False)
    defaults.update(fields)
    return NS(**defaults)


def test_prompt_fields():
    request = request_from_prompt_msg(prompt_msg(points=[NS(x=1.0, y=2.0, z=9.0)], box=[1.0, 2.0, 3.0, 4.0],
                                                 track=True), stamp_ns=5)
    assert request.prompt_id == "p" and request.stamp_ns == 5 and request.track
    assert np.array_equal(request.spec.points, [[1.0, 2.0]]) and list(request.spec.point_labels) == [1]
    assert list(request.spec.box) == [1.0, 2.0, 3.0, 4.0]
    no_box = request_from_prompt_msg(prompt_msg(points=[NS(x=1.0, y=2.0, z=0.0)], point_labels=[0]), 0)
    assert no_box.spec.box is None and list(no_box.spec.point_labels) == [0]


def test_too_many_points_and_bad_clicks():
    with pytest.raises(PromptConversionError, match="at most 64"):
        request_from_prompt_msg(prompt_msg(points=[NS(x=1.0, y=1.0, z=0.0)] * 65), 0)
    with pytest.raises(PromptConversionError, match="non-finite"):
        click_request("c", float("inf"), 2.0)


def test_detections_become_box_prompts_with_the_detector_id():
    def detection(det_id, cx, cy, w, h):
        return NS(id=det_id, bbox=NS(center=NS(position=NS(x=cx, y=cy), theta=0.0), size_x=w, size_y=h))

    requests = requests_from_detections([detection("cup-3", 50.0, 40.0, 20.0, 10.0), detection("", 5.0, 5.0, 4.0, 4.0)],
                                        stamp_ns=7, fallback_prefix="detection")
    assert [r.prompt_id for r in requests] == ["cup-3", "detection-1"]
    assert list(requests[0].spec.box) == [40.0, 35.0, 60.0, 45.0] and requests[0].stamp_ns == 7
