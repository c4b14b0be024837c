"""Starts ovsam_node as a real process and talks to it from this process through rclpy."""
from __future__ import annotations

import array
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from ovsam_ros.msg import InstanceMaskArray, Prompt, PromptArray
from ovsam_ros.tools.harness import DiagnosticsReader, NodeExited, NodeProcess, ToolClient

from .ros_env import apply_to_this_process, isolated_ros_environment

TIMEOUT = 60.0


def make_tiny_weights(directory: Path, classes: list[str]) -> Path:
    """Random ovsam-tiny weights in the released file layout, with a vocabulary file beside them."""
    import torch

    from ovsam_model import build_model
    from ovsam_model.checkpoint import save_official_layout
    from ovsam_model.predictor import OVSAMPredictor
    from ovsam_model.vocabulary import save_vocabulary

    torch.manual_seed(0)
    model = build_model("ovsam-tiny")
    save_official_layout(model, directory)
    predictor = OVSAMPredictor(model, None)
    save_vocabulary(predictor.set_vocabulary(classes), directory / "vocabulary.pt")
    return directory


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    payload = array.array("B")
    payload.frombytes(np.ascontiguousarray(rgb).tobytes())
    msg.data = payload
    return msg


def box_prompt(prompt_id: str, box, stamp_ns: int = 0, track: bool = False) -> Prompt:
    prompt = Prompt(id=prompt_id, box=[float(v) for v in box], track=track)
    prompt.header.stamp.sec, prompt.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return prompt


class NodeUnderTest:
    """The node process plus a client node in this process, on the tools' harness
    (ovsam_ros.tools.harness), with the tests' publishers and failing waits."""

    def __init__(self, parameters: dict[str, Any], module: str = "ovsam_ros.node") -> None:
        apply_to_this_process()
        log = tempfile.NamedTemporaryFile(prefix="ovsam_node-", suffix=".log", delete=False)
        log.close()
        self.node_process = NodeProcess(parameters, env=isolated_ros_environment(), log_path=Path(log.name),
                                        module=module)
        self.process = self.node_process.process
        self._tool = ToolClient("ovsam_test_client", self.node_process)
        self.node, self.executor = self._tool.node, self._tool.executor
        self._output: str | None = None
        self.results: list[InstanceMaskArray] = []
        reliable = QoSProfile(depth=10)
        self.image_pub = self.node.create_publisher(Image, "image", reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", reliable)
        self.prompts_pub = self.node.create_publisher(PromptArray, "prompts", 10)
        self.text_pub = self.node.create_publisher(String, "text_query", 10)
        self.node.create_subscription(InstanceMaskArray, "instances", self.results.append, 50)
        # What the node counts (images_received, depth_received, ...): tests wait on these, not on sleeps.
        self.diagnostics = DiagnosticsReader(self.node)
        self.frames_published = 0

    def wait_ready(self) -> None:
        self.spin_until(lambda: self.prompts_pub.get_subscription_count() > 0 and
                        self.image_pub.get_subscription_count() > 0, "the node to subscribe")

    def spin_until(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        """Spin until `condition()` holds; fail naming `what` on a timeout, with the node's log if it exited."""
        try:
            held = self._tool.spin_until(condition, timeout)
        except NodeExited:
            raise AssertionError(f"the node exited with {self.process.returncode}:\n{self.close()}") from None
        if not held:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def spin_for(self, seconds: float) -> None:
        self._tool.spin_for(seconds)

    def publish_frame(self, rgb: np.ndarray, stamp_ns: int) -> None:
        self.image_pub.publish(image_msg(rgb, stamp_ns))
        self.frames_published += 1

    def wait_counted(self, key: str, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until the node's diagnostics report `key` (one of its counters) at `count` or more."""
        self.spin_until(lambda: (self.diagnostics.number(key) or 0) >= count,
                        f"the node to count {key} >= {count}", timeout)

    def wait_frames_received(self, timeout: float = TIMEOUT) -> None:
        """Wait until the node has received every frame published with publish_frame (reliable QoS)."""
        self.wait_counted("images_received", self.frames_published, timeout)

    def send_prompts(self, prompts: list[Prompt], stamp_ns: int = 0) -> None:
        msg = PromptArray(prompts=prompts, header=Header())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        self.prompts_pub.publish(msg)

    def answers_for(self, prompt_ids: set[str], timeout: float = TIMEOUT) -> dict[str, Any]:
        """Wait until each id has an instance or a failure; returns id -> (InstanceMask | reason str, array)."""
        found: dict[str, Any] = {}

        def collect() -> bool:
            for result in self.results:
                for instance in result.instances:
                    if instance.prompt_id in prompt_ids:
                        found.setdefault(instance.prompt_id, (instance, result))
                for prompt_id, reason in zip(result.failed_prompt_ids, result.failure_reasons):
                    if prompt_id in prompt_ids:
                        found.setdefault(prompt_id, (reason, result))
            return prompt_ids <= set(found)

        self.spin_until(collect, f"answers for {sorted(prompt_ids)}", timeout)
        return found

    def call(self, srv_type, name: str, request, timeout: float = TIMEOUT, retries: int = 2):
        """Call a service (re-sent up to `retries` times: see ToolClient.call_service); fails on no answer."""
        try:
            response = self._tool.call_service(srv_type, name, request, timeout, retries)
        except NodeExited:
            raise AssertionError(f"the node exited with {self.process.returncode}:\n{self.close()}") from None
        if response is None:
            raise AssertionError(f"no answer from '{name}' within {timeout:.0f} s")
        return response

    def close(self) -> str:
        """Stop the client and the node; returns what the node printed (again on a second call)."""
        if self._output is None:
            self._tool.close()
            self.node_process.stop()
            self._output = self.node_process.log_tail(chars=1_000_000)
            if self.node_process.log_path is not None:
                self.node_process.log_path.unlink(missing_ok=True)
        return self._output

    def is_alive(self) -> bool:
        return self.node_process.alive()
