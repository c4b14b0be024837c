"""`ovsam-model bench`: per-stage latency of every configuration and backend, and the SAM + CLIP baseline.

    ovsam-model bench [--quick] [--models ovsam-shapes,ovsam-rn50x16] [--backends torch,onnxruntime,tensorrt]
                      [--devices cpu,cuda] [--prompts 1,10,50] [--repeats N] [--warmup N]
                      [--full-repeats N] [--full-warmup N] [--baseline auto|vit_h|miniature|none]
                      [--baseline-repeats N] [--threads N] [--json OUT.json]

Prints a Markdown table and writes the results as JSON (and the table as OUT.md beside it).
--quick is the CI-sized run: ovsam-shapes only, a miniature baseline, a few repeats (under a minute
on two cores). The default full run includes the 1024-input model and SAM ViT-H, which on a CPU
costs tens of seconds to minutes per frame: budget ~15 minutes on 2 cores (see docs/performance.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

DEFAULT_JSON = "out/bench/ovsam_model_bench.json"


def _names(text: str) -> tuple[str, ...]:
    return tuple(piece.strip() for piece in text.split(",") if piece.strip())


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(piece) for piece in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--prompts {text!r} must be comma-separated whole numbers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("--prompts needs at least one count, each at least 1")
    return counts


def _frame_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frame-size {text!r} must look like 640x480") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError("--frame-size must be at least 16x16")
    return height, width


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="latency per stage, backend and device; SAM+CLIP baseline",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized run: ovsam-shapes, miniature baseline, 5 repeats")
    parser.add_argument("--models", type=_names, default=None, help="comma-separated configurations "
                        "(default: ovsam-shapes,ovsam-rn50x16; --quick: ovsam-shapes)")
    parser.add_argument("--backends", type=_names, default=None,
                        help="comma-separated (default: every backend present)")
    parser.add_argument("--devices", type=_names, default=None, help="cpu,cuda (default: cpu, plus cuda when present)")
    parser.add_argument("--prompts", type=_counts, default=(1, 10, 50),
                        help="prompt counts per frame (default 1,10,50)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed frames per small model (default 10; --quick 5)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed frames first (default 2; --quick 1)")
    parser.add_argument("--full-repeats", type=int, default=3, help="timed frames for 512+ input models (default 3)")
    parser.add_argument("--full-warmup", type=int, default=1, help="untimed frames for 512+ input models (default 1)")
    parser.add_argument("--frame-size", type=_frame_size, default=(480, 640), help="camera frame WxH (default 640x480)")
    parser.add_argument("--vocabulary-size", type=int, default=1203,
                        help="classes to name against (default 1203, LVIS)")
    parser.add_argument("--baseline", choices=("auto", "vit_h", "miniature", "none"), default=None,
                        help="auto: ViT-H when ovsam-rn50x16 is measured, else miniature (--quick: miniature)")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="timed baseline frames (default 1)")
    parser.add_argument("--baseline-warmup", type=int, default=0, help="untimed baseline frames (default 0)")
    parser.add_argument("--gpu-precision", choices=("fp16", "bf16"), default="fp16", help="GPU variants' precision")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (CUDA graphs) on a GPU")
    parser.add_argument("--threads", type=int, default=None, help="torch/onnxruntime CPU threads (default: torch's)")
    parser.add_argument("--onnx-dir", default=None, help="root for ONNX exports (default: ~/.cache/ovsam_ros/onnx)")
    parser.add_argument("--json", default=DEFAULT_JSON,
                        help=f"results file (default {DEFAULT_JSON}); table as .md beside it")
    parser.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace):
    from ovsam_model.benchmark.run import BenchOptions

    quick = args.quick
    options = BenchOptions(
        models=args.models or (("ovsam-shapes",) if quick else ("ovsam-shapes", "ovsam-rn50x16")),
        backends=args.backends,
        devices=args.devices,
        prompt_counts=args.prompts,
        repeats=args.repeats if args.repeats is not None else (5 if quick else 10),
        warmup=args.warmup if args.warmup is not None else (1 if quick else 2),
        full_size_repeats=args.full_repeats,
        full_size_warmup=args.full_warmup,
        frame_size=args.frame_size,
        vocabulary_size=args.vocabulary_size,
        baseline=args.baseline or ("miniature" if quick else "auto"),
        baseline_repeats=args.baseline_repeats,
        baseline_warmup=args.baseline_warmup,
        gpu_precision=args.gpu_precision,
        compile=args.compile,
        onnx_dir=args.onnx_dir,
    )
    for name in ("repeats", "full_size_repeats", "baseline_repeats"):
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_size', '').replace('_', '-')} must be at least 1")
    if min(options.warmup, options.full_size_warmup, options.baseline_warmup) < 0:
        raise ValueError("warm-up counts cannot be negative")
    if quick:
        options.notes.append("quick (CI-sized) run")
    return options


def run(args: argparse.Namespace) -> int:
    import torch

    from ovsam_model.benchmark.report import format_report
    from ovsam_model.benchmark.run import run_benchmark
    from ovsam_model.config import ConfigError, get_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        options = options_from_args(args)
        for name in options.models:
            get_config(name)
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError("--threads must be at least 1")
            torch.set_num_threads(args.threads)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = run_benchmark(options, scratch=out.parent)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = format_report(results)
    print()
    print(report)
    out.write_text(json.dumps(results, indent=2, default=str))
    out.with_suffix(".md").write_text(report + "\n")
    print(f"\nresults: {out} (table: {out.with_suffix('.md')})")
    return 1 if any("error" in run for run in results["runs"]) else 0
