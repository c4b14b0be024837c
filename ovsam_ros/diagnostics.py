"""The node's health as diagnostic_msgs/DiagnosticStatus: latency per stage, queue, drops, device."""
from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ovsam_model.benchmark.statistics import latency_summary

from .worker import WorkerStats


def build_status(*, name: str, hardware_id: str, stats: WorkerStats | None, queue_depth: int,
                 counters: dict[str, int], info: dict[str, str], last_image_time: float | None,
                 camera_timeout_s: float, problems: list[str], watches_camera: bool = True) -> DiagnosticStatus:
    """`watches_camera` false: the status of a node whose cameras have statuses of their own (no image age)."""
    values: list[KeyValue] = [KeyValue(key=k, value=str(v)) for k, v in info.items()]
    values += [KeyValue(key=k, value=str(v)) for k, v in counters.items()]
    values.append(KeyValue(key="queue_depth", value=str(queue_depth)))
    level, message = DiagnosticStatus.OK, "running"
    if stats is not None:
        for key in ("prompts_received", "prompts_answered", "prompts_failed", "prompts_rejected_overload",
                    "prompts_expired_in_queue",
                    "frames_processed", "frames_dropped", "frames_encoded_together", "errors"):
            values.append(KeyValue(key=key, value=str(getattr(stats, key))))
        for stage, samples in sorted(stats.stage_ms.items()):
            summary = latency_summary(samples)
            if summary["samples"]:
                values.append(KeyValue(key=f"{stage}_ms_p50", value=f"{summary['p50_ms']:.1f}"))
                values.append(KeyValue(key=f"{stage}_ms_p95", value=f"{summary['p95_ms']:.1f}"))
        if stats.last_error:
            values.append(KeyValue(key="last_error", value=stats.last_error))
    if not watches_camera:
        pass
    elif last_image_time is None:
        level, message = DiagnosticStatus.WARN, "no image received yet"
    else:
        age = time.monotonic() - last_image_time
        values.append(KeyValue(key="last_image_age_s", value=f"{age:.2f}"))
        if age > camera_timeout_s:
            level, message = DiagnosticStatus.WARN, f"camera stopped: no image for {age:.1f} s"
    if problems:
        level = max(level, DiagnosticStatus.WARN)
        message = "; ".join([message] + problems) if message != "running" else "; ".join(problems)
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=values)


def diagnostic_array(statuses: list[DiagnosticStatus], stamp: Any) -> DiagnosticArray:
    array = DiagnosticArray(status=statuses)
    array.header.stamp = stamp
    return array
