"""Two cameras in one node vs two single-camera nodes: memory, answered frames and prompt latency.

    python -m ovsam_ros.tools.bench_cameras [--rate 10] [--seconds 20] [--width 640] [--height 480]
                                            [--device auto] [--json out/bench/ovsam_ros_cameras.json]

Two set-ups on a private ROS domain, one after the other, with the same probe (this process):
- "one node": ovsam_node with `cameras: [front, rear]`, so its topics are front/... and rear/...;
- "two nodes": two ovsam_node processes of one camera each, in the namespaces /front and /rear, so
  their topics have the same names.
The probe publishes both cameras itself at --rate (a still scene each, different seeds, fresh stamps),
keeps one tracked box per camera (so the node segments every frame it can: answered frames per second
per camera = distinct frame stamps answered on c/instances per second), and sends a box prompt per
camera every --prompt-interval seconds on the latest frame (prompt latency = its answer's arrival -
its sending). Resident memory is the sum of VmRSS over each node process and its children (the
model's process, with inference_process true), sampled once a second; the peak is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from ovsam_model.benchmark.statistics import latency_summary
from ovsam_ros.tools.bench import _isolated_environment
from ovsam_ros.tools.harness import NodeProcess, ToolClient
from ovsam_ros.tools.image_sources import still_scene

CAMERAS = ("front", "rear")
DEFAULT_JSON = "out/bench/ovsam_ros_cameras.json"


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier += children
    total_kib = 0
    for member in tree:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024.0


def run_setup(name: str, nodes: list[NodeProcess], args: argparse.Namespace) -> dict[str, Any]:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ovsam_ros.image_conversion import array_to_image
    from ovsam_ros.msg import InstanceMaskArray, Prompt, PromptArray

    client = ToolClient(f"ovsam_cameras_probe_{len(nodes)}", nodes[0])
    probe = client.node
    scenes = {camera: still_scene(args.seed + index, args.width, args.height, count=1)
              for index, camera in enumerate(CAMERAS)}
    image_pubs = {c: probe.create_publisher(Image, f"/{c}/image", 5) for c in CAMERAS}
    prompt_pubs = {c: probe.create_publisher(PromptArray, f"/{c}/prompts", 10) for c in CAMERAS}
    state: dict[str, Any] = {"measuring": False, "last_frame": 0.0, "last_prompt": 0.0, "prompt_ids": 0,
                             "stamp": {c: 0 for c in CAMERAS}}
    frames_answered: dict[str, set[int]] = {c: set() for c in CAMERAS}
    sent_at: dict[str, float] = {}
    latency_ms: dict[str, list[float]] = {c: [] for c in CAMERAS}
    tracked: dict[str, bool] = {c: False for c in CAMERAS}
    rss_mib: list[float] = []

    def on_instances(camera: str, msg: InstanceMaskArray) -> None:
        now = time.monotonic()
        ids = [i.prompt_id for i in msg.instances] + list(msg.failed_prompt_ids)
        if any(i.prompt_id == f"track-{camera}" for i in msg.instances):
            tracked[camera] = True
            if state["measuring"]:
                frames_answered[camera].add(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        elif f"track-{camera}" in msg.failed_prompt_ids:
            tracked[camera] = False
        for prompt_id in ids:
            started = sent_at.pop(prompt_id, None)
            if started is not None and state["measuring"]:
                latency_ms[camera].append((now - started) * 1e3)

    for camera in CAMERAS:
        probe.create_subscription(InstanceMaskArray, f"/{camera}/instances",
                                  lambda msg, camera=camera: on_instances(camera, msg), 100)

    def each_turn() -> None:
        now = time.monotonic()
        if now - state["last_frame"] >= 1.0 / args.rate:
            state["last_frame"] = now
            stamp = probe.get_clock().now().to_msg()
            for camera in CAMERAS:
                frames, _ = scenes[camera]
                image_pubs[camera].publish(array_to_image(frames[0], "rgb8", header=Header(stamp=stamp,
                                                                                          frame_id=camera)))
                state["stamp"][camera] = stamp
        if now - state["last_prompt"] >= args.prompt_interval and state["stamp"]["front"]:
            state["last_prompt"] = now
            for camera in CAMERAS:
                _, box = scenes[camera]
                if not tracked[camera]:
                    prompt_pubs[camera].publish(PromptArray(prompts=[Prompt(id=f"track-{camera}", box=list(box),
                                                                            track=True)]))
                state["prompt_ids"] += 1
                prompt_id = f"p{state['prompt_ids']}-{camera}"
                prompt = Prompt(id=prompt_id, box=list(box))
                prompt.header.stamp = state["stamp"][camera]
                sent_at[prompt_id] = time.monotonic()
                prompt_pubs[camera].publish(PromptArray(prompts=[prompt]))

    try:
        if not client.spin_until(lambda: all(p.get_subscription_count() > 0 for p in prompt_pubs.values()),
                                 args.startup_timeout):
            raise RuntimeError(f"{name}: the node(s) did not subscribe in {args.startup_timeout:.0f} s")
        if not client.spin_until(lambda: all(tracked.values()), args.startup_timeout, each_turn=each_turn):
            raise RuntimeError(f"{name}: the tracked prompts were not answered")
        client.spin_for(args.warmup_seconds, each_turn)
        state["measuring"] = True
        started = last_sample = time.monotonic()
        while time.monotonic() - started < args.seconds:
            client.spin_for(0.05, each_turn)
            if time.monotonic() - last_sample >= 1.0:
                rss_mib.append(sum(tree_rss_mib(node.pid) for node in nodes))
                last_sample = time.monotonic()
        measured = time.monotonic() - started
        state["measuring"] = False
    finally:
        client.close()
        for node in nodes:
            node.stop()
    cameras = {}
    for camera in CAMERAS:
        summary = latency_summary(latency_ms[camera])
        cameras[camera] = {"answered_fps": len(frames_answered[camera]) / measured,
                           "prompts_answered": summary["samples"], "prompts_unanswered": len(
                               [p for p in sent_at if p.endswith(camera)]),
                           "prompt_latency_ms_p50": summary["p50_ms"], "prompt_latency_ms_p95": summary["p95_ms"]}
    return {"setup": name, "processes": len(nodes), "peak_rss_mib": max(rss_mib) if rss_mib else None,
            "seconds": measured, "cameras": cameras}


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = _isolated_environment(args.domain_id)
    os.environ.update({key: env[key] for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE") if key in env})
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    common = {"device": args.device, "publish_overlay": "false", "image_qos": "reliable"}
    results = []
    one = NodeProcess({**common, "cameras": "[front, rear]"}, env=env, log_path=out.parent / "cameras_one_node.log")
    results.append(run_setup("one node, two cameras", [one], args))
    two = [NodeProcess(common, env=env, log_path=out.parent / f"cameras_node_{camera}.log",
                       ros_args=["-r", f"__ns:=/{camera}"]) for camera in CAMERAS]
    results.append(run_setup("two single-camera nodes", two, args))
    from ovsam_model.benchmark.timing import machine_info

    return {"machine": machine_info(), "rate_hz": args.rate, "width": args.width, "height": args.height,
            "prompt_interval_s": args.prompt_interval, "setups": results}


def format_table(result: dict[str, Any]) -> str:
    lines = ["| set-up | processes | peak RSS (MiB) | camera | answered frames/s | prompt p50 (ms) | prompt p95 (ms) |",
             "|---|---|---|---|---|---|---|"]
    for setup in result["setups"]:
        for camera, figures in setup["cameras"].items():
            lines.append(f"| {setup['setup']} | {setup['processes']} | {setup['peak_rss_mib']:.0f} | {camera} | "
                         f"{figures['answered_fps']:.1f} | {figures['prompt_latency_ms_p50']:.0f} | "
                         f"{figures['prompt_latency_ms_p95']:.0f} |")
    one, two = (setup["peak_rss_mib"] for setup in result["setups"])
    lines.append(f"\nOne node's memory / the two nodes': {one / two:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovsam bench-cameras", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second per camera (default 10)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per set-up")
    parser.add_argument("--prompt-interval", type=float, default=0.5, help="seconds between prompts per camera")
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--domain-id", type=int, default=None)
    parser.add_argument("--json", default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    result = run(args)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(format_table(result))
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
