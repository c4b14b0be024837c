"""The interfaces across real processes: a peer publishes every message type and serves both
services; this process subscribes, calls and checks the field values that arrive."""
from __future__ import annotations

import math

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from ovsam_ros.msg import Prompt
from ovsam_ros.srv import Segment, SetVocabulary
from tests.ros import interface_samples as samples
from tests.ros.ros_env import apply_to_this_process, spin_until, start_python, stop

pytestmark = pytest.mark.ros
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def ros():
    apply_to_this_process()
    peer = start_python("tests.ros.interface_peer")
    rclpy.init()
    node = rclpy.create_node("interface_checker")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    output = stop(peer)
    assert "interface_peer ready" in output, output


def receive(ros, topic: str):
    node, executor = ros
    msg_type, _ = samples.TOPICS[topic]
    received = []
    subscription = node.create_subscription(msg_type, topic, received.append, 10)
    try:
        spin_until(node, executor, lambda: received, TIMEOUT, f"a message on '{topic}'")
    finally:
        node.destroy_subscription(subscription)
    return received[0]


def test_prompt_fields(ros):
    msg = receive(ros, "prompt")
    assert msg.id == "click-7"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (samples.STAMP_SEC, samples.STAMP_NANOSEC)
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert [(p.x, p.y) for p in msg.points] == [(120.5, 64.0), (10.0, 20.0)]
    assert list(msg.point_labels) == [1, 0]
    assert list(msg.box) == [100.0, 50.0, 180.0, 90.0]
    assert msg.track is True


def test_prompt_array_fields(ros):
    msg = receive(ros, "prompts")
    assert [p.id for p in msg.prompts] == ["click-7", "box-1"]
    box_only = msg.prompts[1]
    assert len(box_only.points) == 0 and len(box_only.point_labels) == 0
    assert list(box_only.box) == [1.0, 2.0, 3.0, 4.0] and box_only.track is False


def check_instance(instance):
    assert instance.id == 42 and instance.prompt_id == "click-7"
    assert instance.label == "red star" and instance.class_index == 3
    assert math.isclose(instance.score, 0.875) and math.isclose(instance.mask_score, 0.5)
    assert list(instance.top_labels) == ["red star", "red cross"]
    assert [round(s, 3) for s in instance.top_scores] == [0.875, 0.125]
    roi = instance.roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (100, 50, 3, 2)
    mask = instance.mask
    assert (mask.encoding, mask.width, mask.height, mask.step) == ("mono8", 3, 2, 3)
    assert bytes(mask.data) == bytes([0, 255, 255, 255, 255, 0])


def test_instance_mask_fields(ros):
    check_instance(receive(ros, "instance"))


def test_instance_mask_array_fields(ros):
    msg = receive(ros, "instances")
    assert (msg.image_height, msg.image_width) == (480, 640)
    assert len(msg.instances) == 1
    check_instance(msg.instances[0])
    assert list(msg.failed_prompt_ids) == ["late-1"]
    assert list(msg.failure_reasons) == ["frame with stamp 1.0 is no longer buffered"]
    assert msg.header.stamp.sec == samples.STAMP_SEC


def call(ros, srv_type, name: str, request):
    node, executor = ros
    client = node.create_client(srv_type, name)
    try:
        spin_until(node, executor, client.service_is_ready, TIMEOUT, f"service '{name}'")
        # A first request can be lost while the reply channel is still being matched: re-send once.
        for attempt in range(2):
            future = client.call_async(request)
            try:
                spin_until(node, executor, future.done, 15.0 if attempt == 0 else TIMEOUT, f"the answer of '{name}'")
                return future.result()
            except AssertionError:
                if attempt == 1:
                    raise
                client.remove_pending_request(future)
    finally:
        node.destroy_client(client)


def test_segment_service(ros):
    request = Segment.Request(
        image=Image(height=4, width=5, encoding="rgb8", step=15, data=bytes(60)),
        prompts=[Prompt(id="a"), Prompt(id="b")],
        text_queries=["mug", "screwdriver"],
    )
    response = call(ros, Segment, "segment", request)
    assert response.success is True
    assert response.message == "queries: mug,screwdriver"
    assert [i.prompt_id for i in response.result.instances] == ["a", "b"]
    assert (response.result.image_height, response.result.image_width) == (4, 5)


def test_set_vocabulary_service(ros):
    ok = call(ros, SetVocabulary, "set_vocabulary", SetVocabulary.Request(classes=["mug", "cup", "bowl"]))
    assert (ok.success, ok.size, ok.message) == (True, 3, "explicit")
    bad = call(ros, SetVocabulary, "set_vocabulary", SetVocabulary.Request())
    assert (bad.success, bad.size) == (False, 0)
