"""What 3D adds per answer: 20 instances on a 640x480 frame with 16UC1 depth.

Run: `python -m ovsam_ros.tools.bench_3d [--instances 20] [--repeats 200]`. Prints the median and p95 of
(1) depth pairing + geometry (depth_fusion.DepthFusion.locate), with its CPU-time median against the
budget of 10 ms (20 instances at 640x480) and against one instance's in the same run (what each
further instance costs), and (2) that plus building the Instance3DArray and the labelled cloud
messages (skipped where the ROS messages do not import). The ray table is built once per calibration
and is not timed.
"""
from __future__ import annotations

import argparse
import sys
import time
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from ovsam_model.benchmark.statistics import percentile
from ovsam_model.mask_box import tight_box

from ..depth_fusion import DepthFusion
from ..depth_image import depth_from_array

WIDTH, HEIGHT = 640, 480
FOCAL = 525.0
BUDGET_MS = 10.0  # what 3D may add to an answer of 20 instances at 640x480 (the 3D issue's target)


def synthetic_frame(instances: int, seed: int = 0) -> tuple[SimpleNamespace, list, np.ndarray, np.ndarray]:
    """A tabletop-like depth image (a slanted plane with noise and holes) with `instances` elliptical
    objects standing out of it, their masks, and a colour image."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    depth = 1.2 + 0.4 * (HEIGHT - v) / HEIGHT + rng.normal(0, 0.003, (HEIGHT, WIDTH))
    results = []
    for index in range(instances):
        cx, cy = rng.uniform(60, WIDTH - 60), rng.uniform(60, HEIGHT - 60)
        ax, ay = rng.uniform(20, 60), rng.uniform(20, 60)
        mask = ((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2 <= 1.0
        depth[mask] = rng.uniform(0.6, 1.1) - 0.05 * (1 - ((u[mask] - cx) / ax) ** 2)
        box = tight_box(mask)
        prediction = SimpleNamespace(mask=mask, box=box, prompt_id=f"p{index}", label="object", class_index=index,
                                     score=0.9)
        results.append(SimpleNamespace(prediction=prediction, track_id=0))
    depth[rng.random((HEIGHT, WIDTH)) < 0.05] = 0.0  # sensor holes
    depth_mm = np.round(depth * 1000).astype(np.uint16)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    camera_info = SimpleNamespace(width=WIDTH, height=HEIGHT, k=[FOCAL, 0, WIDTH / 2 - 0.5, 0, FOCAL, HEIGHT / 2 - 0.5,
                                                                 0, 0, 1], d=[0.0] * 5, distortion_model="plumb_bob")
    return camera_info, results, depth_mm, rgb


def measure(action: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and p95 of wall time and of this process's CPU time, in ms. On a loaded machine the
    CPU time shows the work itself and the wall time what a caller waits."""
    action()
    wall, cpu = [], []
    for _ in range(repeats):
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append((time.perf_counter() - started_wall) * 1e3)
        cpu.append((time.process_time() - started_cpu) * 1e3)
    return {"median": percentile(wall, 50), "p95": percentile(wall, 95),
            "cpu_median": percentile(cpu, 50), "cpu_p95": percentile(cpu, 95)}


def report(what: str, timing: dict[str, float]) -> None:
    print(f"{what}: median {timing['median']:.2f} ms, p95 {timing['p95']:.2f} ms "
          f"(CPU time: median {timing['cpu_median']:.2f} ms, p95 {timing['cpu_p95']:.2f} ms)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    camera_info, results, depth_mm, rgb = synthetic_frame(args.instances)
    frame = SimpleNamespace(stamp_ns=1_000_000_000, width=WIDTH, height=HEIGHT)
    fusion = DepthFusion()
    fusion.add(depth_from_array(depth_mm, "16UC1", frame.stamp_ns))
    located = fusion.locate(frame, results, camera_info, tolerance_s=0.02)
    points = sum(item.geometry.valid_points for item in located.located)
    print(f"{args.instances} instances on {WIDTH}x{HEIGHT} 16UC1 depth: {len(located.located)} placed, "
          f"{points} points, {len(located.failures)} failed")
    geometry = measure(lambda: fusion.locate(frame, results, camera_info, tolerance_s=0.02), args.repeats)
    report("geometry (pairing, back-projection, trimming, centroid, boxes)", geometry)
    one = measure(lambda: fusion.locate(frame, results[:1], camera_info, tolerance_s=0.02), args.repeats)
    report("the same for one instance (baseline)", one)
    print(f"CPU-time median: {geometry['cpu_median'] / BUDGET_MS:.2f} of the {BUDGET_MS:g} ms budget"
          f"{' (for 20 instances)' if args.instances != 20 else ''}; "
          f"{geometry['cpu_median'] / max(one['cpu_median'], 1e-9):.1f}x one instance's")
    try:
        from std_msgs.msg import Header

        from ..instances3d_conversion import fusion_to_msg, labelled_cloud
    except ImportError as error:
        print(f"messages not measured: {error}")
        return 0

    def geometry_and_messages() -> None:
        answer = fusion.locate(frame, results, camera_info, tolerance_s=0.02)
        fusion_to_msg(answer, Header())
        labelled_cloud(answer, rgb, Header())

    report("geometry + Instance3DArray + labelled cloud", measure(geometry_and_messages, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
