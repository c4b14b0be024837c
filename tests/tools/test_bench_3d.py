"""The issue's budget: 3D for 20 instances on a 640x480 frame adds at most 10 ms on this machine.

Measured as CPU time of this process, so other jobs sharing the 2 cores do not decide the outcome.
"""
from __future__ import annotations

from types import SimpleNamespace

from ovsam_ros.depth_fusion import DepthFusion
from ovsam_ros.depth_image import depth_from_array
from ovsam_ros.tools.bench_3d import HEIGHT, WIDTH, measure, synthetic_frame

BUDGET_MS = 10.0


def test_twenty_instances_at_640x480_within_budget():
    camera_info, results, depth_mm, _ = synthetic_frame(20)
    frame = SimpleNamespace(stamp_ns=1, width=WIDTH, height=HEIGHT)
    fusion = DepthFusion()
    fusion.add(depth_from_array(depth_mm, "16UC1", 1))
    placed = fusion.locate(frame, results, camera_info, tolerance_s=0.02)
    assert len(placed.located) == 20 and sum(p.geometry.valid_points for p in placed.located) > 50_000
    timing = measure(lambda: fusion.locate(frame, results, camera_info, tolerance_s=0.02), repeats=30)
    assert timing["cpu_median"] <= BUDGET_MS, timing
