"""Overload (camera at 60 Hz, a slow model, a stream of prompts) and the managed lifecycle."""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import NodeNameNonExistentError

from ovsam_ros.msg import Prompt
from ovsam_ros.srv import Segment
from ovsam_ros.tools.soak import rss_kib  # noqa: E402 - the node and its inference process
from tests.ros.node_harness import NodeUnderTest, box_prompt, image_msg, make_tiny_weights

pytestmark = pytest.mark.ros
CLASSES = ["red star", "blue cross", "green circle"]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("tiny-weights"), CLASSES)


def test_overload_drops_frames_but_answers_every_prompt(tiny_weights):
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(tiny_weights), "image_qos": "reliable",
                          "frame_buffer_size": 4, "feature_cache_size": 2}, module="tests.ros.slow_node")
    diagnostics: list[DiagnosticArray] = []
    node.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    try:
        node.wait_ready()
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(8)]
        node.publish_frame(frames[0], 1)
        node.wait_frames_received()
        node.send_prompts([box_prompt("tracked", [20, 20, 90, 80], track=True)])
        node.answers_for({"tracked"})
        rss_after_warmup = rss_kib(node.process.pid)
        sent: list[str] = []
        started = time.monotonic()
        frame_index = 0
        while time.monotonic() - started < 6.0:  # 60 Hz camera, 20 prompts/s on the latest frame
            node.publish_frame(frames[frame_index % len(frames)], 10_000_000 + frame_index)
            if frame_index % 3 == 0:
                prompt_id = f"p{len(sent)}"
                sent.append(prompt_id)
                node.send_prompts([box_prompt(prompt_id, [10, 10, 100, 90])])
            frame_index += 1
            node.spin_for(1 / 60)
        answers = node.answers_for(set(sent), timeout=90)
        assert set(answers) == set(sent)  # none lost
        reasons = [payload for payload, _ in answers.values() if isinstance(payload, str)]
        assert all(r.startswith(("empty mask", "overloaded")) for r in reasons), reasons[:5]
        rss_end = rss_kib(node.process.pid)
        assert rss_end < rss_after_warmup * 1.5 + 50_000, (rss_after_warmup, rss_end)
        node.spin_until(lambda: any(int(kv.value) > 0 for d in diagnostics for s in d.status for kv in s.values
                                    if kv.key == "frames_dropped"), "diagnostics reporting dropped frames", 15)
        print(f"overload: {frame_index} frames at 60 Hz, {len(sent)} prompts, all answered; "
              f"RSS {rss_after_warmup} -> {rss_end} KiB")
    finally:
        node.close()


def string_parameter(name: str, value: str) -> Parameter:
    return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))


def test_lifecycle_failed_configure_keeps_the_node_up_then_recovers(tiny_weights, tmp_path):
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(tmp_path / "missing")},
                         module="ovsam_ros.lifecycle_node")
    try:
        def transition(transition_id: int) -> bool:  # not idempotent: sent once
            return node.call(ChangeState, "ovsam_node/change_state",
                             ChangeState.Request(transition=Transition(id=transition_id)), retries=0).success

        def state() -> int:
            return node.call(GetState, "ovsam_node/get_state", GetState.Request()).current_state.id

        def offered_services() -> set[str]:
            # A reply from get_state proves the service is discovered, not the node's own graph entry,
            # which can arrive later: until it does, the node offers nothing we can see.
            try:
                return {name for name, _ in node.node.get_service_names_and_types_by_node("ovsam_node", "/")}
            except NodeNameNonExistentError:
                return set()

        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        # Unconfigured: the lifecycle services are there (get_state answered), segment and the outputs not.
        node.spin_until(lambda: "/ovsam_node/get_state" in offered_services(), "the node's services in the graph")
        assert not {"/segment", "/set_vocabulary"} & offered_services()
        assert node.node.count_publishers("instances") == 0
        assert transition(Transition.TRANSITION_CONFIGURE) is False  # missing checkpoint
        assert node.is_alive() and state() == State.PRIMARY_STATE_UNCONFIGURED
        assert "/segment" not in offered_services()
        result = node.call(SetParameters, "ovsam_node/set_parameters",
                           SetParameters.Request(parameters=[string_parameter("weights_dir", str(tiny_weights))]))
        assert result.results[0].successful, result.results[0].reason
        assert transition(Transition.TRANSITION_CONFIGURE) is True
        node.spin_until(lambda: {"/segment", "/set_vocabulary"} <= offered_services(), "configure to offer segment")
        node.spin_until(lambda: node.node.count_publishers("instances") == 1, "configure to create the outputs")
        assert node.prompts_pub.get_subscription_count() == 0  # configured, not yet active
        assert transition(Transition.TRANSITION_ACTIVATE) is True
        node.spin_until(lambda: node.prompts_pub.get_subscription_count() > 0, "activate to subscribe")
        node.publish_frame(np.zeros((40, 50, 3), np.uint8), 5)
        node.wait_frames_received()
        node.send_prompts([box_prompt("active", [5, 5, 30, 30])])
        assert "active" in node.answers_for({"active"})
        assert transition(Transition.TRANSITION_DEACTIVATE) is True
        node.spin_until(lambda: node.prompts_pub.get_subscription_count() == 0, "deactivate to unsubscribe")
        assert transition(Transition.TRANSITION_CLEANUP) is True
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        node.spin_until(lambda: not {"/segment", "/set_vocabulary"} & offered_services(), "cleanup to remove segment")
        node.spin_until(lambda: node.node.count_publishers("instances") == 0, "cleanup to remove the outputs")
    finally:
        node.close()


def test_model_faults_become_prompt_errors_and_the_node_recovers(tiny_weights, monkeypatch):
    monkeypatch.setenv("OVSAM_TEST_FAULTS", "1")
    monkeypatch.setenv("OVSAM_TEST_ENCODE_DELAY_S", "0.0")
    monkeypatch.setenv("OVSAM_TEST_DECODE_DELAY_S", "0.0")
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(tiny_weights), "image_qos": "reliable",
                          "feature_cache_size": 1}, module="tests.ros.slow_node")
    try:
        node.wait_ready()
        rng = np.random.default_rng(1)
        reasons: list[str] = []
        for round_index in range(6):  # a new frame each round: every third encoding fails
            node.publish_frame(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), 100 + round_index)
            node.wait_frames_received()
            ids = {f"r{round_index}-{k}" for k in range(3)}  # a batch of 3 fails and is retried one by one
            node.send_prompts([box_prompt(pid, [5, 5, 30, 30]) for pid in sorted(ids)])
            answers = node.answers_for(ids)
            reasons += [payload for payload, _ in answers.values() if isinstance(payload, str)]
        assert any("image encoding failed" in r and "out of memory" in r for r in reasons)
        assert node.is_alive()
        assert sum(1 for r in node.results for _ in r.instances) > 0  # the other rounds succeeded
    finally:
        node.close()


def test_corrupt_checkpoint_fails_configure_with_the_file_named(tiny_weights, tmp_path):
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_weights, corrupt)
    victim = sorted(p for p in corrupt.iterdir() if p.suffix in (".pth", ".pt") and "vocab" not in p.name)[0]
    victim.write_bytes(b"\x80\x04 this is not a checkpoint" * 10)
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(corrupt)}, module="ovsam_ros.lifecycle_node")
    try:
        assert node.call(GetState, "ovsam_node/get_state", GetState.Request()).current_state.id \
            == State.PRIMARY_STATE_UNCONFIGURED  # also opens the service connection before the one-shot call
        response = node.call(ChangeState, "ovsam_node/change_state",
                             ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)), retries=0)
        assert response.success is False
        assert node.is_alive()
        state = node.call(GetState, "ovsam_node/get_state", GetState.Request()).current_state.id
        assert state == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        output = node.close()
    assert "configure failed" in output and victim.name in output


def test_a_slow_service_call_does_not_hold_up_prompts(tiny_weights, monkeypatch, tmp_path):
    """The segment service awaits the inference thread instead of blocking the (single-threaded)
    executor: while a call waits on an image encoding, prompts are still taken and answered. The
    encoding waits at a gate the test opens only after the prompt was answered, so the order is
    certain however slow the machine is."""
    monkeypatch.setenv("OVSAM_TEST_ENCODE_DELAY_S", "0")
    monkeypatch.setenv("OVSAM_TEST_ENCODE_GATE", str(tmp_path))
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(tiny_weights), "image_qos": "reliable"},
                         module="tests.ros.slow_node")
    try:
        node.wait_ready()
        client = node.node.create_client(Segment, "segment")
        node.spin_until(client.service_is_ready, "the segment service")
        frame = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        request = Segment.Request(image=image_msg(frame, 7), prompts=[box_prompt("svc", [5, 5, 40, 40])])
        pending = client.call_async(request)
        node.spin_until(lambda: (tmp_path / "encoding").exists(), "the call to reach the image encoding")
        # Refused as it is converted (too many points), so answered by the callback itself.
        node.send_prompts([Prompt(id="bad", points=[Point(x=1.0, y=1.0)] * 65)])
        answers = node.answers_for({"bad"})
        assert answers["bad"][0] == "prompt 'bad' has 65 points; at most 64 are allowed"
        assert not pending.done(), "the service answered while its encoding was held: the gate did not hold"
        (tmp_path / "open").touch()
        node.spin_until(pending.done, "the segment call")
        response = pending.result()
        assert response.success, response.message
        assert {i.prompt_id for i in response.result.instances} | set(response.result.failed_prompt_ids) == {"svc"}
    finally:
        node.close()
