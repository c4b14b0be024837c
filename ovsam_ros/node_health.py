"""The node's health on /diagnostics: what every part of the node counts and the problems it
reports, published once a second with the inference worker's statistics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray

from .diagnostics import build_status, diagnostic_array
from .worker import WorkerStats


@dataclass
class InferenceFacts:
    """What the diagnostics report about the model and its queue at one moment."""

    hardware_id: str = "unconfigured"
    stats: WorkerStats | None = None
    queue_depth: int = 0
    info: dict[str, str] = field(default_factory=dict)
    camera_timeout_s: float = 2.0


class NodeHealth:
    def __init__(self, node: Any, read_facts: Callable[[], InferenceFacts]) -> None:
        self.node = node
        self.logger = node.get_logger()
        self._read_facts = read_facts
        self.counters: dict[str, int] = {}
        self.problems: list[str] = []
        self.last_image_time: float | None = None
        # Created with the node, not on configure: an unconfigured node (one whose configure failed)
        # reports that, and why, here.
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 2)
        node.create_timer(1.0, self.publish)

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def problem(self, message: str) -> None:
        self.problems.append(message)
        del self.problems[:-10]
        self.logger.warning(message, throttle_duration_sec=1.0)

    def publish(self) -> None:
        try:
            facts = self._read_facts()
            status = build_status(
                name=f"{self.node.get_name()}: ovsam", hardware_id=facts.hardware_id, stats=facts.stats,
                queue_depth=facts.queue_depth, counters=dict(self.counters), info=facts.info,
                last_image_time=self.last_image_time, camera_timeout_s=facts.camera_timeout_s,
                problems=self.problems[-3:])
            self.problems = []
            self._publisher.publish(diagnostic_array(status, self.node.get_clock().now().to_msg()))
        except Exception as error:  # noqa: BLE001
            self.logger.error(f"diagnostics failed: {error}", throttle_duration_sec=5.0)
