"""The node's health on /diagnostics: what every part of the node counts and the problems it
reports, published once a second with the inference worker's statistics.

A single-camera node publishes one status, '<node>: ovsam'. With the `cameras` parameter, that status
holds the model and what concerns the whole node, and each camera has its own status,
'<node>: ovsam <camera>', with its counters, its queue and its image age: a camera that stops
publishing warns in its own status only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray

from .diagnostics import build_status, diagnostic_array
from .worker import WorkerStats


class HealthRecord:
    """Counters, recent problems and the last image's time, of the node or of one camera."""

    def __init__(self, logger: Any, label: str = "") -> None:
        self.logger = logger
        self.label = label  # prefixed to logged problems: which camera
        self.counters: dict[str, int] = {}
        self.problems: list[str] = []
        self.last_image_time: float | None = None

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def problem(self, message: str) -> None:
        self.problems.append(message)
        del self.problems[:-10]
        self.logger.warning(f"{self.label}: {message}" if self.label else message, throttle_duration_sec=1.0)

    def take_problems(self) -> list[str]:
        problems, self.problems = self.problems[-3:], []
        return problems


@dataclass
class CameraFacts:
    """One camera's part of the diagnostics (with the `cameras` parameter)."""

    name: str
    health: HealthRecord
    stats: WorkerStats | None = None
    queue_depth: int = 0
    info: dict[str, str] = field(default_factory=dict)


@dataclass
class InferenceFacts:
    """What the diagnostics report about the model and its queue at one moment."""

    hardware_id: str = "unconfigured"
    stats: WorkerStats | None = None
    queue_depth: int = 0
    info: dict[str, str] = field(default_factory=dict)
    camera_timeout_s: float = 2.0
    cameras: list[CameraFacts] = field(default_factory=list)  # empty: the single camera is the node's


class NodeHealth(HealthRecord):
    def __init__(self, node: Any, read_facts: Callable[[], InferenceFacts]) -> None:
        super().__init__(node.get_logger())
        self.node = node
        self._read_facts = read_facts
        # Created with the node, not on configure: an unconfigured node (one whose configure failed)
        # reports that, and why, here.
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 2)
        node.create_timer(1.0, self.publish)

    def publish(self) -> None:
        try:
            facts = self._read_facts()
            name = f"{self.node.get_name()}: ovsam"
            node_status = build_status(
                name=name, hardware_id=facts.hardware_id, stats=facts.stats, queue_depth=facts.queue_depth,
                counters=dict(self.counters), info=facts.info, last_image_time=self.last_image_time,
                camera_timeout_s=facts.camera_timeout_s, problems=self.take_problems(),
                watches_camera=not facts.cameras)
            statuses = [node_status] + [
                build_status(name=f"{name} {camera.name}", hardware_id=facts.hardware_id, stats=camera.stats,
                             queue_depth=camera.queue_depth, counters=dict(camera.health.counters),
                             info={"camera": camera.name, **camera.info},
                             last_image_time=camera.health.last_image_time,
                             camera_timeout_s=facts.camera_timeout_s, problems=camera.health.take_problems())
                for camera in facts.cameras]
            self._publisher.publish(diagnostic_array(statuses, self.node.get_clock().now().to_msg()))
        except Exception as error:  # noqa: BLE001
            self.logger.error(f"diagnostics failed: {error}", throttle_duration_sec=5.0)
