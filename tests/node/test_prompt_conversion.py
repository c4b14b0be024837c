"""Messages -> PromptRequests: ROS prompts, clicks and vision_msgs detections (duck-typed here:
vision_msgs is not installable without a ROS install; the same attribute paths are read)."""
from types import SimpleNamespace as NS

import numpy as np
import pytest

from ovsam_ros.prompt_conversion import (
    MAX_PROMPTS_PER_MESSAGE,
    PromptConversionError,
    click_request,
    request_from_prompt_msg,
    requests_from_detections,
    requests_from_prompt_msgs,
)


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


def detection(det_id, cx, cy, w, h):
    return NS(id=det_id, bbox=NS(center=NS(position=NS(x=cx, y=cy), theta=0.0), size_x=w, size_y=h))


def test_detections_become_box_prompts_with_the_detector_id():
    detections = [detection("cup-3", 50.0, 40.0, 20.0, 10.0), detection("", 5.0, 5.0, 4.0, 4.0)]
    converted = requests_from_detections(detections, stamp_ns=7, fallback_prefix="detection")
    requests = converted.requests
    assert [r.prompt_id for r in requests] == ["cup-3", "detection-1"] and converted.failures == []
    assert list(requests[0].spec.box) == [40.0, 35.0, 60.0, 45.0] and requests[0].stamp_ns == 7


def test_every_prompt_past_the_limit_is_answered_with_a_failure_on_both_paths():
    count = MAX_PROMPTS_PER_MESSAGE + 44
    prompts = requests_from_prompt_msgs([prompt_msg(id=f"p{i}", box=[1.0, 1.0, 9.0, 9.0]) for i in range(count)],
                                        stamp_ns=lambda prompt: 5)
    detections = requests_from_detections([detection(f"d{i}", 10.0, 10.0, 4.0, 4.0) for i in range(count)],
                                          stamp_ns=5, fallback_prefix="detection")
    for converted, prefix in ((prompts, "p"), (detections, "d")):
        assert [r.prompt_id for r in converted.requests] == [f"{prefix}{i}" for i in range(MAX_PROMPTS_PER_MESSAGE)]
        past_the_limit = [f"{prefix}{i}" for i in range(MAX_PROMPTS_PER_MESSAGE, count)]
        assert [f.prompt_id for f in converted.failures] == past_the_limit
        assert {f.reason for f in converted.failures} == {f"more than {MAX_PROMPTS_PER_MESSAGE} prompts in one message"}


def test_a_prompt_that_does_not_convert_fails_alone_with_its_reason():
    prompts = requests_from_prompt_msgs([prompt_msg(id="many", points=[NS(x=1.0, y=1.0, z=0.0)] * 65),
                                         prompt_msg(id="text-box", box=["a", 0.0, 1.0, 1.0]),
                                         prompt_msg(id="good", box=[1.0, 1.0, 5.0, 5.0])], stamp_ns=lambda prompt: 0)
    detections = requests_from_detections([detection("text-size", 1.0, 1.0, "wide", 2.0),
                                           detection("good", 5.0, 5.0, 2.0, 2.0)], stamp_ns=0, fallback_prefix="d")
    assert [r.prompt_id for r in prompts.requests] == ["good"] == [r.prompt_id for r in detections.requests]
    reasons = {f.prompt_id: f.reason for f in prompts.failures + detections.failures}
    assert set(reasons) == {"many", "text-box", "text-size"} and "at most 64" in reasons["many"]
