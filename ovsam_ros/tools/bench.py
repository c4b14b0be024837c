"""Node latency: camera stamp -> `instances` received, next to raw rclpy image transport, in one run.

    python -m ovsam_ros.tools.bench [--model ovsam-shapes] [--weights DIR] [--backend torch] [--device cpu]
                              [--rate 30] [--width 640] [--height 480] [--seconds 20] [--json OUT.json]

Three processes on a private ROS domain: a camera (camera_publisher --source still-scene) publishing
sensor_msgs/Image at --rate with fresh stamps, the real ovsam_node, and this probe. The probe
subscribes to the camera's images itself (raw transport latency: receive time - stamp) and to the
node's `instances`, after starting a tracked box prompt so that the node segments every frame it
can. It also reads the node's own per-stage times from /diagnostics (encode, decode, message
conversion + publish), so "overhead beyond model time" = end-to-end latency - (encode + decode).
Two phases share the node: the camera at --rate (30 Hz: the headline latency, including the wait
for the frame in progress when the model is slower than the camera) and at --overhead-rate (10 Hz),
where the model keeps up and the overhead is the node's own. The camera shows a still scene
(objects do not move) so the tracked box stays on its object with any weights; the node still
encodes every frame. Without shipped weights for --model, random
weights in the released layout are written to a temporary folder (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from ovsam_model.benchmark.statistics import latency_summary
from ovsam_ros.tools.harness import REPO_ROOT, NodeProcess, ToolClient, child_environment, stop_process
from ovsam_ros.tools.image_sources import still_scene

TRACK_PROMPT_ID = "bench-track"
DEFAULT_JSON = "out/bench/ovsam_ros_bench.json"


# -- weights -------------------------------------------------------------------------------------

def prepare_weights(model: str, weights: str, scratch: Path) -> tuple[str, str]:
    """(weights directory or "" for the shipped ones, description)."""
    from ovsam_model.build import shipped_weights_dir

    if weights:
        return weights, f"weights from {weights}"
    if shipped_weights_dir(model).is_dir():
        return "", "shipped weights"
    import torch

    from ovsam_model import build_model
    from ovsam_model.checkpoint import save_official_layout
    from ovsam_model.predictor import OVSAMPredictor
    from ovsam_model.synthetic.classes import CLASS_NAMES
    from ovsam_model.vocabulary import save_vocabulary

    torch.manual_seed(0)
    network = build_model(model)
    directory = scratch / f"{model}-random"
    save_official_layout(network, directory)
    predictor = OVSAMPredictor(network, None)
    save_vocabulary(predictor.set_vocabulary(list(CLASS_NAMES)), directory / "vocabulary.pt")
    return str(directory), "random weights in the released layout (no shipped weights found; speed is the same)"


def summarize(transport_ms: list[float], end_to_end_ms: list[float], diagnostics: dict[str, str],
              seconds: float, rate_hz: float) -> dict[str, Any]:
    """One phase's numbers, with overhead = end-to-end p50 - (encode p50 + decode p50)."""
    transport, end_to_end = latency_summary(transport_ms), latency_summary(end_to_end_ms)

    def number(key: str) -> float | None:
        try:
            return float(diagnostics[key])
        except (KeyError, ValueError):
            return None

    encode, decode = number("encode_ms_p50"), number("decode_ms_p50")
    model_ms = None if encode is None or decode is None else encode + decode
    summary: dict[str, Any] = {
        "rate_hz": rate_hz,
        "seconds": round(seconds, 2),
        "transport": transport,
        "end_to_end": end_to_end,
        "node_stages_p50_ms": {"encode": encode, "decode": decode,
                               "convert_publish": number("convert_publish_ms_p50")},
        "model_p50_ms": model_ms,
        "images_received_per_s": transport["samples"] / seconds if seconds > 0 else None,
        "answered_frames_per_s": end_to_end["samples"] / seconds if seconds > 0 else None,
        "frames_processed_total": number("frames_processed"),
        "frames_dropped_total": number("frames_dropped"),
    }
    if model_ms is not None and end_to_end["samples"]:
        summary["overhead_p50_ms"] = end_to_end["p50_ms"] - model_ms
        if transport["samples"]:
            summary["overhead_beyond_transport_p50_ms"] = summary["overhead_p50_ms"] - transport["p50_ms"]
    return summary


def format_summary(result: dict[str, Any]) -> str:
    def cell(block: dict, key: str) -> str:
        value = block.get(key)
        return "-" if value is None else f"{value:.1f}"

    lines = [
        f"Node latency, {result['width']}x{result['height']} rgb8 camera, model {result['model']} "
        f"({result['backend']} {result['precision']}, device {result['device']}, {result['weights']})",
        "",
        "| camera | measure | p50 ms | p95 ms | p99 ms | samples |",
        "|---|---|---|---|---|---|",
    ]
    for phase in result["phases"]:
        rate = f"{phase['rate_hz']:g} Hz"
        for name, key in (("raw rclpy image transport (camera -> probe)", "transport"),
                          ("camera stamp -> instances received", "end_to_end")):
            block = phase[key]
            lines.append(f"| {rate} | {name} | {cell(block, 'p50_ms')} | {cell(block, 'p95_ms')} | "
                         f"{cell(block, 'p99_ms')} | {block['samples']} |")
    lines.append("")
    for phase in result["phases"]:
        stages = phase["node_stages_p50_ms"]
        lines.append(
            f"- {phase['rate_hz']:g} Hz: node stages p50 (its diagnostics) encode {cell(stages, 'encode')} ms, "
            f"decode {cell(stages, 'decode')} ms, message conversion + publish {cell(stages, 'convert_publish')} ms; "
            f"overhead beyond model time p50 {cell(phase, 'overhead_p50_ms')} ms "
            f"({cell(phase, 'overhead_beyond_transport_p50_ms')} ms beyond transport); answered "
            f"{phase['answered_frames_per_s'] or 0:.1f} frames/s of {phase['images_received_per_s'] or 0:.1f} received")
    lines.append("At a camera rate above what the model sustains, the newest frame waits for the one in progress "
                 "(frames in between are skipped): that wait is in the end-to-end figure, not in the model time.")
    return "\n".join(lines)


# -- the probe ---------------------------------------------------------------------------------------

def _isolated_environment(domain_id: int | None) -> dict[str, str]:
    return child_environment(domain_id if domain_id is not None else 100 + os.getpid() % 100)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    env = _isolated_environment(args.domain_id)
    os.environ.update({key: env[key] for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from ovsam_ros.msg import InstanceMaskArray, Prompt, PromptArray

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="ovsam_ros_bench-"))
    weights_dir, weights_text = prepare_weights(args.model, args.weights, scratch)
    _, track_box = still_scene(args.seed, args.width, args.height, count=1)

    parameters = {"model": args.model, "device": args.device, "backend": args.backend, "precision": args.precision,
                  "publish_overlay": "false", "image_qos": args.qos}
    if weights_dir:
        parameters["weights_dir"] = weights_dir
    node_process = NodeProcess(parameters, env=env, log_path=out.parent / "ovsam_ros_bench_node.log")
    camera_process: subprocess.Popen | None = None
    try:
        client = ToolClient("ovsam_bench_probe", node_process)
    except Exception:
        node_process.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    probe = client.node
    transport_ms: list[float] = []
    end_to_end_ms: list[float] = []
    state: dict[str, Any] = {"measuring": False, "restarts": 0, "answers": 0, "images": 0,
                             "restart_due": False, "last_sent": 0.0, "last_failure": ""}

    def now_ns() -> int:
        return probe.get_clock().now().nanoseconds

    def stamp_ns(header) -> int:
        return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec

    def on_image(msg: Image) -> None:
        state["images"] += 1
        if state["measuring"]:
            transport_ms.append((now_ns() - stamp_ns(msg.header)) / 1e6)

    def on_instances(msg: InstanceMaskArray) -> None:
        received = now_ns()
        ours = any(i.prompt_id == TRACK_PROMPT_ID for i in msg.instances)
        failed = [reason for pid, reason in zip(msg.failed_prompt_ids, msg.failure_reasons) if pid == TRACK_PROMPT_ID]
        if not (ours or failed):
            return
        # A failure on a frame is still an answer for that frame (the node did the work).
        if state["measuring"] and stamp_ns(msg.header):
            end_to_end_ms.append((received - stamp_ns(msg.header)) / 1e6)
        if ours:
            state["answers"] += 1
        else:  # the track ended (lost, empty mask, no frame yet): start it again
            state["last_failure"] = failed[0]
            state["restart_due"] = True

    prompts_pub = probe.create_publisher(PromptArray, "prompts", 10)
    image_qos = QoSProfile(depth=5) if args.qos == "reliable" else qos_profile_sensor_data
    probe.create_subscription(Image, "image", on_image, image_qos)
    probe.create_subscription(InstanceMaskArray, "instances", on_instances, 50)

    def send_track() -> None:
        prompts_pub.publish(PromptArray(prompts=[Prompt(id=TRACK_PROMPT_ID, box=list(track_box), track=True)]))
        state["last_sent"], state["restart_due"] = time.monotonic(), False

    def restart_track_when_due() -> None:
        if state["restart_due"] and time.monotonic() - state["last_sent"] > 0.5:
            state["restarts"] += 1
            send_track()

    def spin_until(condition, timeout: float) -> bool:
        return client.spin_until(condition, timeout, each_turn=restart_track_when_due)

    def start_camera(rate: float) -> subprocess.Popen:
        command = [sys.executable, "-m", "ovsam_ros.tools.camera_publisher", "--source", "still-scene",
                   "--rate", str(rate), "--width", str(args.width), "--height", str(args.height),
                   "--seed", str(args.seed), "--no-camera-info"] + (["--reliable"] if args.qos == "reliable" else [])
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    phases = []
    try:
        if not spin_until(lambda: prompts_pub.get_subscription_count() > 0, args.startup_timeout):
            raise RuntimeError(f"ovsam_node did not come up in {args.startup_timeout:.0f} s; "
                               f"see {node_process.log_path}")
        for rate in [args.rate] + ([args.overhead_rate] if args.overhead_rate else []):
            camera_process = start_camera(rate)
            state["images"] = 0
            if not spin_until(lambda: state["images"] > 3, args.startup_timeout):
                raise RuntimeError(f"no camera images arrived in {args.startup_timeout:.0f} s")
            state["answers"] = 0
            # The track started in the first phase lives on (no frames, no misses); start it again
            # only when it does not answer.
            if not spin_until(lambda: state["answers"] > 0, 3.0):
                send_track()
            if not spin_until(lambda: state["answers"] > 0, args.startup_timeout):
                raise RuntimeError(f"no answer to the tracked prompt in {args.startup_timeout:.0f} s "
                                   f"(last failure: {state['last_failure'] or 'none'}); see {node_process.log_path}")
            spin_until(lambda: False, args.warmup_seconds)
            transport_ms.clear()
            end_to_end_ms.clear()
            state["measuring"] = True
            started = time.monotonic()
            spin_until(lambda: False, args.seconds)
            measured = time.monotonic() - started
            state["measuring"] = False
            spin_until(lambda: False, 1.2)  # one more diagnostics message, covering the end of the phase
            phases.append(summarize(list(transport_ms), list(end_to_end_ms), client.diagnostics.latest(),
                                    measured, rate))
            stop_process(camera_process)
            camera_process = None
    finally:
        client.close()
        if camera_process is not None:
            stop_process(camera_process)
        node_process.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    from ovsam_model.benchmark.timing import machine_info

    return {
        "machine": machine_info(), "model": args.model, "backend": args.backend, "precision": args.precision,
        "device": args.device, "weights": weights_text, "width": args.width, "height": args.height,
        "track_restarts": state["restarts"], "phases": phases, "node_diagnostics_last": client.diagnostics.latest(),
        "note": "the node's stage times are p50 over its last 200 samples (its diagnostics)",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovsam_ros.tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ovsam-shapes", help="model configuration (default: the node's default)")
    parser.add_argument("--weights", default="", help="weights directory (default: shipped, else random)")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--rate", type=float, default=30.0, help="camera frames per second (default 30)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per camera rate (default 20 s)")
    parser.add_argument("--overhead-rate", type=float, default=10.0,
                        help="a second camera rate the model keeps up with, for the node's own overhead "
                             "(default 10 Hz; 0 skips it)")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="unmeasured time after the first answer")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--qos", choices=("reliable", "sensor_data"), default="reliable",
                        help="image QoS of camera, node and probe (default reliable: with best effort, Fast DDS "
                             "drops many 640x480 frames on a loaded machine)")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a private one)")
    parser.add_argument("--json", default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.width < 16 or args.height < 16:
        parser.error("--rate and --seconds must be positive, --width/--height at least 16")
    try:
        result = run_bench(args)
    except RuntimeError as error:  # NodeExited included
        print(f"ovsam_ros.tools.bench: {error}", file=sys.stderr)
        return 1
    report = format_summary(result)
    print(report)
    out = Path(args.json)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(report + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
