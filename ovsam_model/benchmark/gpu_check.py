"""`scripts/gpu-check`: every check and figure that needs CUDA, in one run of a few minutes.

GPU time for this project is scarce and short, so one command does it all, in order of value, and
stops starting new checks when its time budget is spent:

1. torch_cuda: the predictor's torch path on the GPU in fp32 and fp16 (a full predict on
   `ovsam-rn50x16` with seeded random weights, boxes and points on a 640x480 scene) against the
   same predictor on the CPU in fp32: masks and labels within TOLERANCES.
2. onnxruntime: onnxruntime's CUDA execution provider, if this onnxruntime has it, against torch.
3. tensorrt: if TensorRT imports: engine build, parity against torch, and reuse of the cached
   engine by a second backend (no rebuild).
4. bench: `ovsam-model bench` at the model's input size (1024), torch fp16 on the GPU: image
   part, 1 / 10 / 50 prompts, frames per second.
5. node: the ROS node end to end on `device: cuda` (stamp-to-answer p50/p95 at 30 Hz, 640x480), when
   rclpy imports (the lent GPU machine has no ROS 2: then it says so).

Each check ends ok, failed (with what was out of tolerance) or skipped (with the reason). The run
writes gpu-check.json and gpu-check.md (a short table) to --out. `--cpu-mode` runs the same
code on the CPU with the small `ovsam-tiny` configuration, so the suite keeps it from rotting
(tests/model/test_gpu_check.py); its figures mean nothing for a GPU.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ovsam_model.mask_iou import mask_pair_iou

# Agreement asked of each device path against the CPU fp32 reference. Masks: IoU per prompt.
# Labels: the top-1 class must match wherever the reference's top-1 leads its runner-up by at least
# `label_margin` in probability (random weights leave near-ties that any rounding may flip).
TOLERANCES = {
    "fp32": {"min_mask_iou": 0.98, "label_margin": 0.01},
    "fp16": {"min_mask_iou": 0.90, "label_margin": 0.05},
    "onnxruntime": {"min_mask_iou": 0.98, "label_margin": 0.01},
    "tensorrt": {"min_mask_iou": 0.90, "label_margin": 0.05},
}
DEFAULT_BUDGET_S = 450.0  # 7.5 minutes: one run of scripts/gpu-check fits an 8-minute device slot


@dataclass
class CheckResult:
    name: str
    status: str = "ok"        # ok | failed | skipped
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Plan:
    device: str
    model: str
    precisions: tuple[str, ...]
    frame_hw: tuple[int, int] = (480, 640)
    bench_repeats: int = 10
    node_seconds: float = 20.0
    node_rate_hz: float = 30.0


def gpu_plan() -> Plan:
    return Plan(device="cuda", model="ovsam-rn50x16", precisions=("fp32", "fp16"))


def cpu_plan() -> Plan:
    return Plan(device="cpu", model="ovsam-tiny", precisions=("fp32",), frame_hw=(96, 128), bench_repeats=2,
                node_seconds=4.0, node_rate_hz=5.0)


# ---------------------------------------------------------------------------------------- scene

def _scene(frame_hw: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, list]:
    """A frame with a few flat shapes, and box and point prompts on them."""
    from ovsam_model.prompts import PromptSpec

    rng = np.random.default_rng(seed)
    height, width = frame_hw
    image = (rng.integers(60, 90, size=(height, width, 3))).astype(np.uint8)
    prompts = []
    for index in range(8):
        w, h = int(width * rng.uniform(0.1, 0.25)), int(height * rng.uniform(0.1, 0.25))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        image[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, size=3)
        prompts.append(PromptSpec(f"box-{index}", box=[x0, y0, x0 + w, y0 + h]))
        prompts.append(PromptSpec(f"point-{index}", points=[[x0 + w / 2, y0 + h / 2]]))
    return image, prompts


def _seeded_model(name: str, device: str):
    from ovsam_model.modeling.ovsam import build_model

    torch.manual_seed(0)
    return build_model(name, device="cpu").to(device).eval()


def _vocabulary(model) -> Any:
    from ovsam_model.vocabulary import Vocabulary

    generator = torch.Generator().manual_seed(1)
    embeddings = torch.nn.functional.normalize(torch.randn(100, 1, model.config.text_dim, generator=generator), dim=-1)
    return Vocabulary([f"class {i}" for i in range(100)], embeddings)


def _reference(plan: Plan, image: np.ndarray, prompts: list) -> tuple[list, Any]:
    from ovsam_model.predictor import OVSAMPredictor

    model = _seeded_model(plan.model, "cpu")
    vocabulary = _vocabulary(model)
    predictor = OVSAMPredictor(model, vocabulary)
    predictor.set_image(image)
    return predictor.predict(prompts, top_k=2), vocabulary


def compare(reference: list, candidate: list, tolerance: dict[str, float]) -> tuple[dict[str, Any], list[str]]:
    """Mask IoU and label agreement of `candidate` against `reference` predictions, prompt by prompt."""
    ious, decided, agreeing, problems = [], 0, 0, []
    for ref, got in zip(reference, candidate):
        iou = mask_pair_iou(ref.mask, got.mask)
        ious.append(iou)
        if iou < tolerance["min_mask_iou"]:
            problems.append(f"{ref.prompt_id}: mask IoU {iou:.3f} < {tolerance['min_mask_iou']}")
        margin = ref.top_scores[0] - ref.top_scores[1] if len(ref.top_scores) > 1 else 1.0
        if ref.box is not None and margin >= tolerance["label_margin"]:
            decided += 1
            if ref.label == got.label:
                agreeing += 1
            else:
                problems.append(f"{ref.prompt_id}: label {got.label!r} != {ref.label!r} (margin {margin:.3f})")
    figures = {"prompts": len(ious), "min_mask_iou": round(min(ious), 4),
               "mean_mask_iou": round(float(np.mean(ious)), 4),
               "labels_compared": decided, "labels_agreeing": agreeing}
    return figures, problems


# ---------------------------------------------------------------------------------------- checks

def check_torch(plan: Plan, context: dict[str, Any]) -> CheckResult:
    from ovsam_model.backends import create_backend
    from ovsam_model.predictor import OVSAMPredictor

    result = CheckResult("torch_" + plan.device)
    image, prompts = context["scene"]
    reference, vocabulary = context["reference"]
    for precision in plan.precisions:
        model = _seeded_model(plan.model, plan.device)
        predictor = OVSAMPredictor(model, vocabulary, backend=create_backend(model, "torch", precision, fallback=False))
        predictor.set_image(image)
        figures, problems = compare(reference, predictor.predict(prompts, top_k=2), TOLERANCES[precision])
        result.figures[precision] = figures
        if problems:
            result.status = "failed"
            result.reason += f"{precision}: " + "; ".join(problems[:5]) + " "
    return result


def check_onnxruntime(plan: Plan, context: dict[str, Any]) -> CheckResult:
    try:
        import onnxruntime
    except ImportError:
        return CheckResult("onnxruntime", "skipped", "onnxruntime is not installed")
    if plan.device == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return CheckResult("onnxruntime", "skipped",
                           f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider "
                           f"(providers: {', '.join(onnxruntime.get_available_providers())}); install onnxruntime-gpu")
    from ovsam_model.backends import create_backend
    from ovsam_model.predictor import OVSAMPredictor

    image, prompts = context["scene"]
    reference, vocabulary = context["reference"]
    model = _seeded_model(plan.model, plan.device)
    with tempfile.TemporaryDirectory() as scratch:
        backend = create_backend(model, "onnxruntime", onnx_dir=Path(scratch) / "onnx", fallback=False)
        predictor = OVSAMPredictor(model, vocabulary, backend=backend)
        predictor.set_image(image)
        figures, problems = compare(reference, predictor.predict(prompts, top_k=2), TOLERANCES["onnxruntime"])
    figures["provider"] = backend.providers[0]
    return CheckResult("onnxruntime", "failed" if problems else "ok", "; ".join(problems[:5]), figures)


def check_tensorrt(plan: Plan, context: dict[str, Any]) -> CheckResult:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return CheckResult("tensorrt", "skipped",
                           "TensorRT is not importable here (pip install tensorrt-cu12 on a GPU)")
    if plan.device != "cuda":
        return CheckResult("tensorrt", "skipped", "TensorRT needs the GPU plan")
    from ovsam_model.backends import create_backend
    from ovsam_model.predictor import OVSAMPredictor

    image, prompts = context["scene"]
    reference, vocabulary = context["reference"]
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        options = {"onnx_dir": Path(scratch) / "onnx", "cache_dir": Path(scratch) / "engines"}
        model = _seeded_model(plan.model, plan.device)
        started = time.perf_counter()
        backend = create_backend(model, "tensorrt", "fp16", fallback=False, **options)
        predictor = OVSAMPredictor(model, vocabulary, backend=backend)
        predictor.set_image(image)
        results = predictor.predict(prompts, top_k=2)
        figures["first_run_s"] = round(time.perf_counter() - started, 1)
        engines = sorted(p.name for p in Path(options["cache_dir"]).glob("*") if p.suffix != ".json")
        started = time.perf_counter()
        again = OVSAMPredictor(model, vocabulary, backend=create_backend(model, "tensorrt", "fp16", fallback=False,
                                                                        **options))
        again.set_image(image)
        again.predict(prompts[:1], top_k=2)
        figures["second_run_s"] = round(time.perf_counter() - started, 1)
        rebuilt = sorted(p.name for p in Path(options["cache_dir"]).glob("*") if p.suffix != ".json") != engines
    parity, problems = compare(reference, results, TOLERANCES["tensorrt"])
    figures.update(parity, engines=len(engines), rebuilt_on_second_run=rebuilt)
    if rebuilt:
        problems.append("the second backend built new engines instead of loading the cached ones")
    return CheckResult("tensorrt", "failed" if problems else "ok", "; ".join(problems[:5]), figures)


def check_bench(plan: Plan, context: dict[str, Any]) -> CheckResult:
    from ovsam_model.benchmark.run import BenchOptions, run_benchmark

    options = BenchOptions(models=(plan.model,), backends=("torch",), devices=(plan.device,), prompt_counts=(1, 10, 50),
                           repeats=plan.bench_repeats, warmup=1, full_size_repeats=plan.bench_repeats,
                           full_size_warmup=1, frame_size=plan.frame_hw, baseline="none",
                           gpu_precision="fp16")
    with tempfile.TemporaryDirectory() as scratch:
        results = run_benchmark(options, scratch=Path(scratch))
    figures: dict[str, Any] = {}
    for run in results["runs"]:
        if "error" in run:
            return CheckResult("bench", "failed", str(run["error"]))
        stages = run["stages"]
        row = {"image_part_p50_ms": round(stages.get("image_part", {}).get("p50_ms", float("nan")), 2)}
        for count in (1, 10, 50):
            frame = stages.get(f"frame_{count}", {}).get("p50_ms")
            if frame:
                row[f"frame_{count}_p50_ms"] = round(frame, 2)
                row[f"fps_{count}_prompts"] = round(1000.0 / frame, 1)
        figures[run["label"]] = row
    return CheckResult("bench", figures=figures)


def check_batched_encode(plan: Plan, context: dict[str, Any]) -> CheckResult:
    """Two cameras' frames through the image encoder as one batch against one at a time (the node's
    multi-camera worker batches them)."""
    from ovsam_model.benchmark.batched_encode import bench_batched_encode
    from ovsam_model.predictor import OVSAMPredictor

    model = _seeded_model(plan.model, plan.device)
    predictor = OVSAMPredictor(model, _vocabulary(model), cache_size=4)
    result = bench_batched_encode(predictor, cameras=2, repeats=plan.bench_repeats, warmup=1)
    return CheckResult("batched_encode", figures={
        "two_frames_batched_p50_ms": round(result["batched_ms"]["p50_ms"], 2),
        "two_frames_one_at_a_time_p50_ms": round(result["one_at_a_time_ms"]["p50_ms"], 2),
        "ratio_batched_to_one_at_a_time": round(result["ratio_batched_to_one_at_a_time"], 3)})


def check_node(plan: Plan, context: dict[str, Any]) -> CheckResult:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return CheckResult("node", "skipped", "rclpy is not importable (no ROS 2 here): the node's end-to-end "
                                              "latency needs a machine with both ROS 2 and the GPU")
    out = Path(context["out"]) / "node-bench.json"
    command = [sys.executable, "-m", "ovsam_ros.tools.bench", "--model", plan.model, "--device", plan.device,
               "--rate", str(plan.node_rate_hz), "--seconds", str(plan.node_seconds), "--warmup-seconds", "2",
               "--overhead-rate", "0",
               "--width", str(plan.frame_hw[1]), "--height", str(plan.frame_hw[0]), "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=plan.node_seconds * 6 + 240)
    if completed.returncode != 0:
        return CheckResult("node", "failed", f"the node bench exited {completed.returncode}: "
                                             f"{completed.stderr.strip().splitlines()[-1:]}")
    results = json.loads(out.read_text())
    phase = results["phases"][0]
    latency = phase.get("end_to_end", {})
    if not latency.get("samples"):
        return CheckResult("node", "failed", "the node answered no frame in the measured time")
    return CheckResult("node", figures={"rate_hz": plan.node_rate_hz, "frame_hw": list(plan.frame_hw),
                                        "stamp_to_answer_p50_ms": round(latency["p50_ms"], 1),
                                        "stamp_to_answer_p95_ms": round(latency["p95_ms"], 1),
                                        "answered": latency["samples"]})


CHECKS: tuple[tuple[str, Callable[[Plan, dict[str, Any]], CheckResult]], ...] = (
    ("torch", check_torch), ("onnxruntime", check_onnxruntime), ("tensorrt", check_tensorrt),
    ("bench", check_bench), ("batched_encode", check_batched_encode), ("node", check_node),
)


# ---------------------------------------------------------------------------------------- running

def run_checks(plan: Plan, out: Path, budget_s: float = DEFAULT_BUDGET_S,
               only: tuple[str, ...] | None = None) -> dict[str, Any]:
    from ovsam_model.benchmark.timing import machine_info

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"plan": plan.__dict__, "machine": machine_info(), "checks": []}
    if plan.device == "cuda" and not torch.cuda.is_available():
        report["checks"].append(CheckResult("all", "skipped", "this torch sees no CUDA GPU; use --cpu-mode").__dict__)
        return _write(report, out)
    if plan.device == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    context: dict[str, Any] = {"out": out, "scene": _scene(plan.frame_hw)}
    context["reference"] = _reference(plan, *context["scene"])
    for name, check in CHECKS:
        if only is not None and name not in only:
            continue
        elapsed = time.perf_counter() - started
        if elapsed > budget_s:
            result = CheckResult(name, "skipped", f"time budget of {budget_s:.0f} s spent ({elapsed:.0f} s)")
        else:
            check_started = time.perf_counter()
            try:
                result = check(plan, context)
            except Exception as error:  # noqa: BLE001 - one broken check must not hide the others' figures
                result = CheckResult(name, "failed", f"{type(error).__name__}: {error}")
                result.figures["traceback"] = traceback.format_exc(limit=5)
            result.seconds = round(time.perf_counter() - check_started, 1)
        print(f"[gpu-check] {result.name}: {result.status} ({result.seconds} s) {result.reason}", flush=True)
        report["checks"].append(result.__dict__)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return _write(report, out)


def _write(report: dict[str, Any], out: Path) -> dict[str, Any]:
    (out / "gpu-check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu-check.md").write_text(format_table(report) + "\n")
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [f"gpu-check on {report.get('gpu', report['plan']['device'])}, model {report['plan']['model']}",
             "", "| check | status | s | figures / reason |", "| --- | --- | --- | --- |"]
    for check in report["checks"]:
        figures = {k: v for k, v in check["figures"].items() if k != "traceback"}
        detail = check["reason"] or json.dumps(figures, default=str)
        lines.append(f"| {check['name']} | {check['status']} | {check['seconds']} | {detail} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-mode", action="store_true", help="run the CPU-capable parts on ovsam-tiny (for tests)")
    parser.add_argument("--out", default="gpu-check", help="folder for gpu-check.json and gpu-check.md")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="no check starts after this")
    parser.add_argument("--only", nargs="*", default=None, choices=[name for name, _ in CHECKS])
    args = parser.parse_args(argv)
    plan = cpu_plan() if args.cpu_mode else gpu_plan()
    report = run_checks(plan, Path(args.out), args.budget_s, tuple(args.only) if args.only else None)
    print(format_table(report))
    return 1 if any(check["status"] == "failed" for check in report["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
