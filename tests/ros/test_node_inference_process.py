"""The node runs its model in a child process: killing that process (as the kernel's OOM killer would)
costs the prompts in flight an explicit error, never the node; a new child serves the next prompts."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray

from tests.ros.node_harness import NodeUnderTest, box_prompt, make_tiny_weights

pytestmark = pytest.mark.ros
CLASSES = ["red star", "blue cross", "green circle"]


def latest_values(diagnostics: list[DiagnosticArray]) -> dict[str, str]:
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name.endswith(": ovsam"):
                return {kv.key: kv.value for kv in status.values}
    return {}


def test_a_killed_inference_process_costs_errors_not_the_node(tmp_path, monkeypatch):
    # The model's image encodings wait at a gate (tests/ros/slow_node.py, in the child process), so a
    # prompt is certainly in flight when the child is killed, however busy the machine is.
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "open").touch()
    monkeypatch.setenv("OVSAM_TEST_ENCODE_DELAY_S", "0")
    monkeypatch.setenv("OVSAM_TEST_ENCODE_GATE", str(gate))
    weights = make_tiny_weights(tmp_path / "w", CLASSES)
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(weights), "image_qos": "reliable"},
                         module="tests.ros.slow_node")
    diagnostics: list[DiagnosticArray] = []
    node.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    try:
        node.wait_ready()
        frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        node.publish_frame(frame, 1)
        node.wait_frames_received()
        node.send_prompts([box_prompt("before", [10, 10, 90, 80])])
        before, _ = node.answers_for({"before"})["before"]
        assert not isinstance(before, str), before
        node.spin_until(lambda: latest_values(diagnostics).get("inference", "").startswith("child process"),
                        "diagnostics naming the inference process")
        values = latest_values(diagnostics)
        child = int(values["inference"].split()[-1])
        assert child != node.process.pid and values["inference_restarts"] == "0"

        (gate / "open").unlink()
        (gate / "encoding").unlink()
        node.publish_frame(frame, 2)  # a frame not encoded yet
        node.wait_frames_received()
        node.send_prompts([box_prompt("in-flight", [10, 10, 90, 80], stamp_ns=2)])
        node.spin_until(lambda: (gate / "encoding").exists(), "the in-flight prompt's image encoding")
        os.kill(child, signal.SIGKILL)
        (gate / "open").touch()  # the next child's encodings pass
        in_flight, _ = node.answers_for({"in-flight"})["in-flight"]
        assert isinstance(in_flight, str) and "inference process" in in_flight, in_flight
        answers = {}
        for attempt in range(20):
            node.publish_frame(frame, 1_000 + attempt)
            node.wait_frames_received()
            prompt_id = f"after-{attempt}"
            node.send_prompts([box_prompt(prompt_id, [10, 10, 90, 80])])
            answers.update(node.answers_for({prompt_id}))
            if not isinstance(answers[prompt_id][0], str):
                break
        results = [answer for answer, _ in answers.values()]
        assert not isinstance(results[-1], str), f"no prompt segmented after the restart: {results}"
        # Whatever was in flight when the child died got a reason, not silence.
        assert all("inference process" in r or "not cached" in r for r in results if isinstance(r, str)), results
        node.spin_until(lambda: latest_values(diagnostics).get("inference_restarts") == "1",
                        "diagnostics counting the restart")
        assert latest_values(diagnostics)["inference"] != f"child process {child}"
        assert node.is_alive()
    finally:
        output = node.close()
    assert "Traceback" not in output, output


def test_a_hung_model_call_fails_its_prompts_after_inference_timeout_s(tmp_path, monkeypatch):
    monkeypatch.setenv("OVSAM_TEST_ENCODE_DELAY_S", "30")  # every image encoding hangs
    weights = make_tiny_weights(tmp_path / "w", CLASSES)
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(weights), "image_qos": "reliable",
                          "inference_timeout_s": 1.0}, module="tests.ros.slow_node")
    try:
        node.wait_ready()
        node.publish_frame(np.zeros((48, 64, 3), np.uint8), 1)
        node.wait_frames_received()
        node.send_prompts([box_prompt("hung", [5, 5, 40, 40])])
        reason, _ = node.answers_for({"hung"}, timeout=30)["hung"]
        assert isinstance(reason, str) and "did not answer 'set_image' within 1 s" in reason, reason
        assert node.is_alive()
    finally:
        node.close()
