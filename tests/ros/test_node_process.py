"""ovsam_node as a real process (random-weight tiny model): stamps, failures, services, bad input.

Label correctness on real scenes is tested with the shipped model in test_node_shipped_model.py;
here the model's answers are random, so the tests check the node's contract: every prompt answered
once, results on the right frame, errors reported with ids, and the node alive after bad input.
The weights are seeded and the frames fixed, so the answers are too: the boxes prompted where a test
needs an instance are boxes these weights segment on these frames, and the test asserts it first.
"""
from __future__ import annotations

import array
import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from ovsam_ros.msg import Prompt
from ovsam_ros.srv import Segment, SetVocabulary
from tests.ros.node_harness import NodeUnderTest, box_prompt, image_msg, make_tiny_weights

pytestmark = pytest.mark.ros
CLASSES = ["red star", "blue cross", "green circle"]
RNG = np.random.default_rng(3)
FRAMES = {stamp: RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8) for stamp in (1_000_000_000, 2_000_000_000)}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    weights = make_tiny_weights(tmp_path_factory.mktemp("tiny-weights"), CLASSES)
    vocabularies = tmp_path_factory.mktemp("vocabularies")
    (vocabularies / "kitchen.txt").write_text("# a user's list\nmug\nbowl\nspoon\n")
    (vocabularies / "corrupt.txt").write_bytes(b"\xff\xfe\x00garbage\x80" * 50)
    harness = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(weights), "image_qos": "reliable",
                             "frame_buffer_size": 2, "camera_timeout_s": 1.0, "vocabulary_dirs": str(vocabularies)})
    harness.vocabularies = vocabularies
    try:
        harness.wait_ready()
        for stamp, rgb in FRAMES.items():
            harness.publish_frame(rgb, stamp)
        harness.wait_frames_received()
        yield harness
    finally:
        output = harness.close()
        print(output)


def test_prompts_answered_on_their_frame(node):
    node.send_prompts([box_prompt("on-first", [5, 5, 40, 30], stamp_ns=1_000_000_000),
                       box_prompt("on-latest", [10, 8, 50, 40])])
    answers = node.answers_for({"on-first", "on-latest"})
    for prompt_id, expected_stamp in (("on-first", 1), ("on-latest", 2)):
        payload, array_msg = answers[prompt_id]
        assert array_msg.header.stamp.sec == expected_stamp
        assert (array_msg.image_height, array_msg.image_width) == (48, 64)
        assert not isinstance(payload, str), f"{prompt_id}: {payload}"
        # An instance: its mask fits its roi, its label is from the vocabulary.
        assert payload.mask.encoding == "mono8"
        assert (payload.mask.width, payload.mask.height) == (payload.roi.width, payload.roi.height)
        assert payload.label in CLASSES and len(payload.top_labels) == len(payload.top_scores) <= 3
        assert 255 in set(np.frombuffer(payload.mask.data, np.uint8)) <= {0, 255}


def test_expired_and_invalid_prompts_fail_with_reasons(node):
    bad_points = Prompt(id="nan-point", points=[Point(x=math.nan, y=3.0)])
    outside = Prompt(id="outside", points=[Point(x=500.0, y=3.0)])
    empty = Prompt(id="empty")
    labels = Prompt(id="bad-labels", points=[Point(x=3.0, y=3.0)], point_labels=[1, 0])
    node.send_prompts([box_prompt("expired", [1, 1, 9, 9], stamp_ns=123), bad_points, outside, empty, labels])
    answers = node.answers_for({"expired", "nan-point", "outside", "empty", "bad-labels"})
    assert all(isinstance(payload, str) for payload, _ in answers.values())
    assert "no buffered frame with stamp 0.000000123" in answers["expired"][0]


def test_bad_images_are_rejected_and_the_node_keeps_serving(node):
    bad = [
        Image(height=4, width=4, encoding="yuv422", step=8, data=array.array("B", bytes(32))),
        Image(height=4, width=4, encoding="rgb8", step=5, data=array.array("B", bytes(20))),
        Image(height=0, width=0, encoding="rgb8", step=0),
        Image(height=400, width=400, encoding="rgb8", step=1200, data=array.array("B", bytes(10))),
    ]
    for msg in bad:
        node.image_pub.publish(msg)
    node.text_pub.publish(String(data="x" * 5000))
    node.wait_counted("images_rejected", 4)  # all four arrived, and each was counted as rejected
    node.wait_counted("text_queries_rejected", 1)
    node.send_prompts([box_prompt("after-bad-input", [5, 5, 40, 30])])
    answers = node.answers_for({"after-bad-input"})
    assert answers["after-bad-input"][1].header.stamp.sec == 2  # still answered on the last good frame
    assert node.is_alive()


def test_segment_service_with_own_image_and_latest(node):
    request = Segment.Request(image=image_msg(FRAMES[1_000_000_000], 77), prompts=[box_prompt("svc", [2, 2, 30, 30])],
                              text_queries=[])
    response = node.call(Segment, "segment", request)
    assert response.success, response.message
    result = response.result
    assert (result.image_height, result.image_width) == (48, 64) and result.header.stamp.nanosec == 77
    ids = [i.prompt_id for i in result.instances] + list(result.failed_prompt_ids)
    assert ids == ["svc"]
    latest = node.call(Segment, "segment", Segment.Request(prompts=[box_prompt("svc-latest", [2, 2, 30, 30])]))
    assert latest.success and latest.result.header.stamp.sec == 2
    bad = node.call(Segment, "segment", Segment.Request(image=Image(height=3, width=3, encoding="weird", step=9)))
    assert not bad.success and "unsupported image encoding" in bad.message


def test_segment_call_with_300_prompts_answers_every_id(node):
    """Past the per-message limit (256) each prompt is answered with a failure, never dropped."""
    prompts = [box_prompt(f"many-{i}", [2 + i % 20, 2, 40, 40]) for i in range(300)]
    request = Segment.Request(image=image_msg(FRAMES[1_000_000_000], 5), prompts=prompts)
    response = node.call(Segment, "segment", request)
    assert response.success, response.message
    instances = [i.prompt_id for i in response.result.instances]
    failed = dict(zip(response.result.failed_prompt_ids, response.result.failure_reasons))
    assert sorted(instances + list(failed)) == sorted(p.id for p in prompts)
    assert {failed[f"many-{i}"] for i in range(256, 300)} == {"more than 256 prompts in one message"}


def test_set_vocabulary_switches_and_keeps_old_on_error(node, tmp_path):
    switched = node.call(SetVocabulary, "set_vocabulary", SetVocabulary.Request(classes=["mug", "bowl"]))
    assert switched.success and switched.size == 2
    node.send_prompts([box_prompt("after-switch", [5, 5, 40, 30])])
    payload, _ = node.answers_for({"after-switch"})["after-switch"]
    # These weights segment this box on this frame (test_runtime_parameters asserts it too).
    assert not isinstance(payload, str), payload
    assert payload.label in ("mug", "bowl")
    for name, reason in ((str(tmp_path / "nope.txt"), "outside the allowed vocabulary_dirs"),
                         ("corrupt.txt", "binary file"),
                         ("../../../../etc/passwd", "outside the allowed vocabulary_dirs"),
                         ("missing.txt", "does not exist")):
        refused = node.call(SetVocabulary, "set_vocabulary", SetVocabulary.Request(name=name))
        assert not refused.success and refused.size == 2, (name, refused.message)
        assert reason in refused.message and "previous vocabulary stays" in refused.message, refused.message
    from_file = node.call(SetVocabulary, "set_vocabulary", SetVocabulary.Request(name="kitchen.txt"))
    assert from_file.success and from_file.size == 3, from_file.message
    restored = node.call(SetVocabulary, "set_vocabulary", SetVocabulary.Request(classes=CLASSES))
    assert restored.success and restored.size == 3


def test_clicked_point_is_projected_with_camera_info(node):
    info = CameraInfo(width=64, height=48, k=[50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0])
    info.header.frame_id = "camera"
    node.info_pub.publish(info)
    node.wait_counted("camera_info_received", 1)
    clicks = node.node.create_publisher(PointStamped, "clicked_point", 10)
    node.spin_until(lambda: clicks.get_subscription_count() > 0, "clicked_point subscription")
    front = PointStamped()
    front.header.frame_id = "camera"
    front.point.x, front.point.y, front.point.z = 0.1, 0.05, 1.0  # -> pixel (37, 26.5)
    behind = PointStamped()
    behind.header.frame_id = "camera"
    behind.point.z = -1.0
    other_frame = PointStamped()
    other_frame.header.frame_id = "map"
    other_frame.point.z = 1.0
    for msg in (front, behind, other_frame):
        clicks.publish(msg)
    node.spin_until(lambda: sum(1 for r in node.results for i in list(r.instances) + list(r.failed_prompt_ids)
                                if (getattr(i, "prompt_id", i) or "").startswith("clicked_point-")) >= 3,
                    "answers to three clicks")
    reasons = [reason for r in node.results for pid, reason in zip(r.failed_prompt_ids, r.failure_reasons)
               if pid.startswith("clicked_point-")]
    assert any("behind the camera" in reason for reason in reasons)
    assert any("tf2_ros" in reason or "cannot transform" in reason for reason in reasons)
    # The click in front lands where K puts it, (32 + 50 * 0.1, 24 + 50 * 0.05) = (37, 26.5): its answer
    # is the answer to a point prompt at that pixel on the same (latest) frame.
    clicked = [(i, r) for r in node.results for i in r.instances if i.prompt_id.startswith("clicked_point-")]
    assert len(clicked) == 1, "only the click in front is answered with a mask"
    node.send_prompts([Prompt(id="at-37-26.5", points=[Point(x=37.0, y=26.5)])])
    direct, direct_array = node.answers_for({"at-37-26.5"})["at-37-26.5"]
    (click, click_array) = clicked[0]
    assert not isinstance(direct, str), direct
    assert click_array.header.stamp == direct_array.header.stamp
    assert (click.roi.x_offset, click.roi.y_offset, click.roi.width, click.roi.height) == \
        (direct.roi.x_offset, direct.roi.y_offset, direct.roi.width, direct.roi.height)
    assert bytes(click.mask.data) == bytes(direct.mask.data) and click.label == direct.label
    # A calibration for another image size than the frames': the click is refused with the reason.
    other = CameraInfo(width=128, height=96, k=[100.0, 0.0, 64.0, 0.0, 100.0, 48.0, 0.0, 0.0, 1.0])
    other.header.frame_id = "camera"
    node.info_pub.publish(other)
    node.wait_counted("camera_info_received", 2)
    clicks.publish(front)
    node.spin_until(lambda: any("camera_info is for 128x96 images but the colour image is 64x48" in reason
                                for r in node.results for reason in r.failure_reasons), "the refused click")
    node.info_pub.publish(info)
    node.wait_counted("camera_info_received", 3)


def test_diagnostics_say_when_the_camera_stops(node):
    node.publish_frame(FRAMES[2_000_000_000], 3_000_000_000)
    diagnostics = []
    sub = node.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    node.spin_until(lambda: any("camera stopped" in s.message for d in diagnostics for s in d.status),
                    "a 'camera stopped' diagnostic (camera_timeout_s = 1)", timeout=15)
    node.node.destroy_subscription(sub)
    status = [s for d in diagnostics for s in d.status if "camera stopped" in s.message][-1]
    assert status.level == status.WARN
    keys = {kv.key for kv in status.values}
    assert {"model", "device", "queue_depth", "prompts_received", "frames_dropped"} <= keys


def test_overlay_reaches_a_subscriber(node):
    overlays = []
    sub = node.node.create_subscription(Image, "overlay", overlays.append, 5)
    node.spin_until(lambda: node.node.count_publishers("overlay") > 0, "the overlay publisher")
    # The node draws an overlay only while it sees a subscriber, which it may see a little after this
    # client does: prompt until an overlay comes (the deadline only catches a hang).
    for attempt in range(200):
        ids = {f"overlay-{attempt}-{i}" for i in range(4)}
        node.send_prompts([box_prompt(pid, [4 + i, 4, 40 + i, 30]) for i, pid in enumerate(sorted(ids))])
        answers = node.answers_for(ids)
        segmented = [pid for pid, (payload, _) in answers.items() if not isinstance(payload, str)]
        assert segmented, answers  # an overlay is drawn for instances: these boxes give some on this frame
        if overlays:  # one published with these answers, or with an earlier attempt's
            break
    node.spin_until(lambda: overlays, "an overlay image")
    assert overlays[0].encoding == "rgb8" and (overlays[0].width, overlays[0].height) == (64, 48)
    node.node.destroy_subscription(sub)


def test_runtime_parameters(node):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    def set_parameter(name: str, value) -> tuple[bool, str]:
        if isinstance(value, str):
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        elif isinstance(value, float):
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        response = node.call(SetParameters, "ovsam_node/set_parameters",
                             SetParameters.Request(parameters=[Parameter(name=name, value=parameter_value)]))
        return response.results[0].successful, response.results[0].reason

    assert set_parameter("score_threshold", 0.5) == (True, "")
    assert set_parameter("top_k", 2) == (True, "")
    ok, reason = set_parameter("frame_buffer_size", 50)
    assert not ok and "configure time" in reason
    ok, reason = set_parameter("score_threshold", 3.0)
    assert not ok and "score_threshold" in reason
    assert set_parameter("max_prompt_wait_s", 1.0) == (True, "")
    ok, reason = set_parameter("max_prompt_wait_s", -1.0)
    assert not ok and "max_prompt_wait_s" in reason
    ok, reason = set_parameter("future_stamp_wait_s", 1.0)  # must stay below max_prompt_wait_s
    assert not ok and "future_stamp_wait_s" in reason
    assert set_parameter("future_stamp_wait_s", 0.25) == (True, "")
    assert set_parameter("max_prompt_wait_s", 2.0) == (True, "")
    assert set_parameter("vocabulary", "coco") == (True, "")
    node.send_prompts([box_prompt("coco-label", [5, 5, 40, 30])])
    payload, _ = node.answers_for({"coco-label"})["coco-label"]
    assert not isinstance(payload, str), payload
    from ovsam_model.vocabulary import builtin_class_names

    assert payload.label in builtin_class_names("coco") and len(payload.top_labels) == 2
    assert set_parameter("vocabulary", "") == (True, "")  # back to the model's own
    node.send_prompts([box_prompt("own-label", [5, 5, 40, 30])])
    payload, _ = node.answers_for({"own-label"})["own-label"]
    assert not isinstance(payload, str), payload
    assert payload.label in CLASSES
    ok, reason = set_parameter("vocabulary", "/etc/hostname")  # a file outside vocabulary_dirs
    assert not ok and "outside the allowed vocabulary_dirs" in reason
    assert set_parameter("vocabulary", "kitchen.txt") == (True, "")
    assert set_parameter("score_threshold", 0.0) == (True, "") and set_parameter("top_k", 5) == (True, "")
