"""`python -m ovsam_ros.tools.soak`: load the node and report whether it holds.

Starts ovsam_node as its own process on the chosen model, then for --duration seconds publishes a
camera at --camera-hz and prompts at --prompt-hz (clicks and boxes on the latest and on stamped
frames, some expired, some invalid), with a standing text query (--text-query) and a track. It reports: prompts sent
and answered (lost must be 0), answers by kind, latency percentiles, frames dropped by the node, and
the node's resident memory after warm-up and at the end. Exit status 1 if any prompt was lost or
the node died, or memory grew more than --max-rss-growth.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ovsam_model.benchmark.statistics import percentile
from ovsam_ros.tools.harness import NodeProcess, ToolClient


def answer_kind(reason: str) -> str:
    """Group failure reasons for the report (their texts carry stamps and ids)."""
    for prefix, kind in (("no buffered frame", "expired stamp"), ("no image", "no frame yet"),
                         ("empty mask", "empty mask"), ("overloaded", "overloaded"), ("prompt '", "invalid prompt"),
                         ("inference failed", "model error"), ("image encoding failed", "model error")):
        if reason.startswith(prefix):
            return kind
    return "other: " + reason[:60]


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` and all its descendants (the node and its inference process)."""
    total = 0
    for member in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        kids = children.get(frontier.pop(), [])
        found.extend(kids)
        frontier.extend(kids)
    return found


def run(args: argparse.Namespace) -> dict:
    from geometry_msgs.msg import Point
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from ovsam_model.synthetic.motion import MovingWorld
    from ovsam_ros.msg import InstanceMaskArray, Prompt, PromptArray
    from ovsam_ros.tools.camera_publisher import CameraPublisher

    parameters = ["image_qos:=reliable", f"model:={args.model}", f"max_pending_prompts:={args.max_pending}",
                  f"max_prompt_wait_s:={args.max_wait}"]
    if args.weights:
        parameters.append(f"weights_dir:={args.weights}")
    node_process = NodeProcess(parameters + list(args.node_param))
    operator = ToolClient("ovsam_soak", node_process)
    client = operator.node
    # Images from this loop, with stamps it chooses (prompts refer to them), and no camera_info.
    camera = CameraPublisher(client, reliable=True, frame_id="", camera_info=False)
    prompts_pub = client.create_publisher(
        PromptArray, "prompts", QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE))
    text_pub = client.create_publisher(String, "text_query", 10)
    answers: dict[str, tuple[float, str]] = {}
    answers_lock = threading.Lock()

    def on_instances(msg: InstanceMaskArray) -> None:
        now = time.monotonic()
        with answers_lock:
            for instance in msg.instances:
                answers.setdefault(instance.prompt_id, (now, "instance"))
            for prompt_id, reason in zip(msg.failed_prompt_ids, msg.failure_reasons):
                answers.setdefault(prompt_id, (now, answer_kind(reason)))

    def all_answered() -> bool:
        with answers_lock:
            return set(sent) <= set(answers)

    client.create_subscription(InstanceMaskArray, "instances", on_instances, 1000)
    world = MovingWorld(seed=args.seed, size=args.size, num_objects=4)
    frames = [world.render(i) for i in range(30)]
    sent: dict[str, float] = {}
    stamps: list[int] = []
    report: dict = {"model": args.model, "duration_s": args.duration, "camera_hz": args.camera_hz,
                    "prompt_hz": args.prompt_hz, "text_query": args.text_query,
                    "node_params": list(args.node_param)}
    try:
        # Answers are taken on their own thread: a publish that blocks (reliable images the node is
        # slow to take) must not delay their arrival times, or the client's lag reads as the node's.
        operator.spin_in_background()
        if not operator.wait_for_subscribers([prompts_pub, camera.image_pub], args.startup_timeout):
            raise RuntimeError("the node did not come up")
        if args.text_query:
            text_pub.publish(String(data=args.text_query))
        started = time.monotonic()
        next_frame = next_prompt = started
        frame_index = prompt_index = 0
        rss_warm = None
        rss_samples: list[tuple[float, int]] = []
        next_rss = started
        rng = np.random.default_rng(args.seed)
        while time.monotonic() - started < args.duration:
            now = time.monotonic()
            if now >= next_frame:
                scene = frames[frame_index % len(frames)]
                stamps.append(camera.publish(scene.image, stamp_ns=1_000_000_000 + frame_index * 1_000_000))
                frame_index += 1
                next_frame += 1.0 / args.camera_hz
            if now >= next_prompt and stamps:
                kind = prompt_index % 5
                prompt = Prompt(id=f"soak-{prompt_index}", track=(prompt_index == 0))
                if kind == 0:
                    prompt.points = [Point(x=float(rng.uniform(0, args.size)), y=float(rng.uniform(0, args.size)))]
                elif kind == 1:
                    x0, y0 = rng.uniform(0, args.size / 2, size=2)
                    prompt.box = [float(x0), float(y0), float(x0 + args.size / 3), float(y0 + args.size / 3)]
                elif kind == 2:  # a recent stamped frame
                    stamp = stamps[max(0, len(stamps) - 3)]
                    prompt.header.stamp.sec, prompt.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                    prompt.points = [Point(x=args.size / 2.0, y=args.size / 2.0)]
                elif kind == 3:  # long expired
                    prompt.header.stamp.sec = 1
                    prompt.header.stamp.nanosec = 7
                    prompt.points = [Point(x=3.0, y=3.0)]
                else:  # invalid
                    prompt.points = [Point(x=float("nan"), y=-5.0)]
                sent[prompt.id] = time.monotonic()
                prompts_pub.publish(PromptArray(prompts=[prompt]))
                prompt_index += 1
                next_prompt += 1.0 / args.prompt_hz
            if now >= next_rss:
                rss_samples.append((now - started, rss_kib(node_process.pid)))
                next_rss += 1.0
                if rss_warm is None and now - started > args.warmup:
                    rss_warm = rss_samples[-1][1]
            time.sleep(max(0.0, min(next_frame, next_prompt, next_rss) - time.monotonic()))
        text_pub.publish(String(data=""))
        drain_deadline = time.monotonic() + args.drain_timeout
        while not all_answered() and time.monotonic() < drain_deadline and node_process.alive():
            time.sleep(0.05)
        time.sleep(1.5)  # one more diagnostics period
        operator.close()
        rss_end = rss_kib(node_process.pid)
        # The node's own counts tell a prompt it never answered from an answer lost on the way back.
        diagnostics = operator.diagnostics
        node_counts: dict[str, float] = {key: value for key in ("prompt_wait_ms_p95", "queue_depth")
                                         if (value := diagnostics.number(key)) is not None}
        node_counts.update({key: int(value) for key in ("prompts_received", "prompts_answered", "prompts_failed",
                                                          "prompts_rejected_overload", "prompts_expired_in_queue")
                            if (value := diagnostics.number(key)) is not None})
        by_kind: dict[str, list[float]] = {}
        for prompt_id, t in sent.items():
            if prompt_id in answers:
                arrived, kind = answers[prompt_id]
                by_kind.setdefault(kind, []).append((arrived - t) * 1e3)
        latencies = sorted(value for values in by_kind.values() for value in values)
        served = sorted(by_kind.get("instance", []))
        after_warmup = [kib for t, kib in rss_samples if t > args.warmup]
        report.update({
            "frames_published": frame_index, "frames_dropped_by_node": int(diagnostics.number("frames_dropped") or 0),
            "prompts_sent": len(sent), "prompts_answered": len(latencies),
            "prompts_lost": len(sent) - len(latencies),
            "answers_by_kind": {kind: len(values) for kind, values in by_kind.items()},
            "latency_ms_p50": percentile(latencies, 50), "latency_ms_p95": percentile(latencies, 95),
            "latency_ms_max": percentile(latencies, 100),
            "segmented_latency_ms_p50": percentile(served, 50), "segmented_latency_ms_p95": percentile(served, 95),
            "segmented_latency_ms_max": percentile(served, 100),
            "latency_ms_p50_by_kind": {k: round(percentile(v, 50) or 0.0, 1) for k, v in by_kind.items()},
            "rss_kib_after_warmup": rss_warm, "rss_kib_end": rss_end,
            "rss_kib_max_after_warmup": max(after_warmup, default=None),
            "rss_growth": (rss_end - rss_warm) / rss_warm if rss_warm else None,
            "node_alive": node_process.alive(),
            "node_counts": dict(node_counts),
        })
        return report
    finally:
        operator.close()
        node_process.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovsam soak", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ovsam-shapes")
    parser.add_argument("--weights", default="")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--camera-hz", type=float, default=60.0)
    parser.add_argument("--prompt-hz", type=float, default=100.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pending", type=int, default=1000)
    parser.add_argument("--max-wait", type=float, default=2.0, help="the node's max_prompt_wait_s")
    parser.add_argument("--text-query", default="red star, blue cross, white circle",
                        help="the standing text query during the run; empty for none")
    parser.add_argument("--max-rss-growth", type=float, default=0.05)
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="an extra node parameter, e.g. inference_process:=false (repeatable)")
    args = parser.parse_args(argv)
    report = run(args)
    for key, value in report.items():
        print(f"{key:24s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    healthy = (report["prompts_lost"] == 0 and report["node_alive"]
               and (report["rss_growth"] is None or report["rss_growth"] <= args.max_rss_growth))
    print("HELD" if healthy else "FAILED")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
