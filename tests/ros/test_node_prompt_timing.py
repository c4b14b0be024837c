"""Prompts whose frame is still on its way, and the pending limit, through ovsam_node as a real process
(the shipped model in its child process, frames of the synthetic world, so a box around an object
always gives a mask).

A prompt message is small and overtakes its image through DDS: the node waits for the stamped frame
up to `future_stamp_wait_s`. The tests wait on what the node reports (its diagnostics say when a prompt
waits for its frame), never on a fixed sleep; a deadline only catches a hang, and the one time bound
checked is a lower bound (not answered before the wait is over), which load cannot break.
"""
from __future__ import annotations

import time

import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from ovsam_model.synthetic.motion import MovingWorld
from tests.ros.node_harness import NodeUnderTest, box_prompt

pytestmark = pytest.mark.ros
STAMP0 = 7_000_000_000
LONG_WAIT_S = 20.0  # the frame is published once the node reports the prompt waiting: well within this


@pytest.fixture(scope="module")
def world():
    return MovingWorld(seed=5, size=128, num_objects=3, speed=1.0)


@pytest.fixture(scope="module")
def node(world):
    harness = NodeUnderTest({"image_qos": "reliable", "max_prompt_wait_s": 60.0,
                             "future_stamp_wait_s": LONG_WAIT_S, "max_pending_prompts": 3})
    try:
        harness.wait_ready()
        harness.publish_frame(world.render(0).image, STAMP0)
        harness.send_prompts([box_prompt("warm-up", object_box(world, 0), stamp_ns=STAMP0)])
        harness.answers_for({"warm-up"})
        yield harness
    finally:
        harness.close()


def object_box(world: MovingWorld, frame: int) -> list[float]:
    scene = world.render(frame)
    return [float(v) for v in scene.boxes[scene.most_visible_object()]]


def awaiting(node: NodeUnderTest, count: int) -> None:
    node.spin_until(lambda: node.diagnostics.number("prompts_awaiting_frame") == count,
                    f"the node to report {count} prompt(s) waiting for their frame")


def set_wait(node: NodeUnderTest, seconds: float) -> None:
    value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=seconds)
    response = node.call(SetParameters, "ovsam_node/set_parameters",
                         SetParameters.Request(parameters=[Parameter(name="future_stamp_wait_s", value=value)]))
    assert response.results[0].successful, response.results[0].reason


def test_a_prompt_that_overtakes_its_frame_is_answered_on_it(node, world):
    stamp = STAMP0 + 1
    node.send_prompts([box_prompt("ahead", object_box(world, 1), stamp_ns=stamp)])
    awaiting(node, 1)  # the node holds the prompt and the frame has not been sent: it overtook it
    node.publish_frame(world.render(1).image, stamp)
    payload, array_msg = node.answers_for({"ahead"})["ahead"]
    assert not isinstance(payload, str), payload
    assert (array_msg.header.stamp.sec, array_msg.header.stamp.nanosec) == divmod(stamp, 1_000_000_000)
    assert payload.mask.width > 0 and payload.mask.height > 0


def test_past_max_pending_prompts_a_prompt_is_answered_overloaded_at_once(node, world):
    """Three prompts wait for a frame (max_pending_prompts 3): the fourth is answered `overloaded` while
    they still wait, and they are answered on their frame once it comes."""
    stamp = STAMP0 + 2
    ids = {f"held-{i}" for i in range(3)}
    node.send_prompts([box_prompt(pid, object_box(world, 2), stamp_ns=stamp) for pid in sorted(ids)])
    awaiting(node, 3)
    node.send_prompts([box_prompt("one-too-many", object_box(world, 1), stamp_ns=STAMP0 + 1)])
    reason, _ = node.answers_for({"one-too-many"})["one-too-many"]
    assert reason == "overloaded: 3 prompts already pending"
    assert not ids & {pid for r in node.results for pid in r.failed_prompt_ids}
    node.publish_frame(world.render(2).image, stamp)
    answers = node.answers_for(ids)
    assert all(not isinstance(payload, str) for payload, _ in answers.values()) and len(answers) == 3, answers


def test_a_frame_that_never_comes_fails_its_prompt_after_the_wait(node, world):
    wait_s = 1.0
    set_wait(node, wait_s)
    try:
        sent = time.monotonic()
        node.send_prompts([box_prompt("orphan", object_box(world, 1), stamp_ns=STAMP0 + 99)])
        reason, _ = node.answers_for({"orphan"})["orphan"]
        answered_after = time.monotonic() - sent
    finally:
        set_wait(node, LONG_WAIT_S)
    assert reason.startswith("no buffered frame with stamp 7.000000099"), reason
    assert answered_after >= wait_s, f"failed after {answered_after:.2f} s, before future_stamp_wait_s"
