"""`python -m ovsam_ros.tools.bench`: the summary arithmetic, and a short real run (node + camera + probe)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ovsam_ros.tools.bench import format_summary, summarize
from ovsam_ros.tools.image_sources import still_scene, still_scene_frames

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_overhead_is_end_to_end_minus_the_nodes_model_time() -> None:
    diagnostics = {"encode_ms_p50": "30.0", "decode_ms_p50": "8.0", "convert_publish_ms_p50": "0.9",
                   "frames_processed": "40", "frames_dropped": "2"}
    end_to_end = [45.0, 46.0, 50.0, 52.0, 60.0]
    transport = [2.0, 3.0, 3.0, 4.0]
    phase = summarize(transport, end_to_end, diagnostics, seconds=2.0, rate_hz=10.0)
    assert phase["model_p50_ms"] == 38.0
    assert phase["overhead_p50_ms"] == pytest.approx(50.0 - 38.0)
    assert phase["overhead_beyond_transport_p50_ms"] == pytest.approx(12.0 - 3.0)
    assert phase["answered_frames_per_s"] == 2.5 and phase["images_received_per_s"] == 2.0
    assert phase["node_stages_p50_ms"]["convert_publish"] == 0.9
    text = format_summary({"model": "m", "backend": "torch", "precision": "fp32", "device": "cpu", "weights": "w",
                           "width": 640, "height": 480, "phases": [phase]})
    assert "| 10 Hz | camera stamp -> instances received | 50.0 |" in text
    assert "overhead beyond model time p50 12.0 ms" in text


def test_missing_diagnostics_leave_the_overhead_unknown() -> None:
    phase = summarize([1.0], [40.0], {}, seconds=1.0, rate_hz=30.0)
    assert phase["model_p50_ms"] is None and "overhead_p50_ms" not in phase
    assert phase["end_to_end"]["p50_ms"] == pytest.approx(40.0)  # ovsam_model.benchmark.statistics


def test_camera_frames_have_the_requested_size_and_a_box_on_an_object() -> None:
    frames, box = still_scene(seed=3, width=160, height=120, count=2)
    assert [frame.shape for frame in frames] == [(120, 160, 3), (120, 160, 3)]
    cycled = still_scene_frames(seed=3, width=160, height=120, count=2)
    assert all(np.array_equal(next(cycled)[0], frames[i % 2]) for i in range(4))  # the camera cycles them
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120


@pytest.mark.slow
@pytest.mark.ros
def test_short_node_latency_run(tmp_path) -> None:
    out = tmp_path / "ros_bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "ovsam_ros.tools.bench", "--model", "ovsam-tiny", "--device", "cpu", "--rate", "10",
         "--overhead-rate", "0", "--width", "160", "--height", "120", "--seconds", "3", "--warmup-seconds", "1",
         "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    (phase,) = data["phases"]
    assert phase["rate_hz"] == 10.0
    assert phase["transport"]["samples"] > 10 and phase["transport"]["p50_ms"] > 0
    assert phase["end_to_end"]["samples"] > 3
    assert phase["end_to_end"]["p50_ms"] > phase["transport"]["p50_ms"]
    assert phase["model_p50_ms"] is not None and "overhead_p50_ms" in phase
    assert "camera stamp -> instances received" in result.stdout
