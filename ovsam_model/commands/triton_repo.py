"""`ovsam-model triton-repo`: write a Triton model repository for OV-SAM.

    ovsam-model triton-repo --model NAME [--weights DIR] --out REPO [--backend python|onnx]
                            [--max-batch N] [--no-dynamic-batching] [--instances N] [--device auto|cpu|cuda]

The python variant runs the project's torch modules on the server (it needs ovsam_model and its
requirements installed there; --weights is a path as the server sees it, empty = the shipped
weights). The onnx variant holds the project's ONNX export (it needs the weights here, and nothing
but Triton's onnxruntime backend there). See docs/triton.md.
"""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from ovsam_model.runtime_choices import DEVICES
    from ovsam_model.triton.names import REPOSITORY_BACKENDS

    parser = subparsers.add_parser("triton-repo", help="write a Triton Inference Server model repository")
    parser.add_argument("--model", default="ovsam-shapes", help="configuration name (default: ovsam-shapes)")
    parser.add_argument("--weights", default=None, metavar="DIR",
                        help="weights directory (python: as the server sees it; default: the shipped weights)")
    parser.add_argument("--out", required=True, metavar="REPO", help="the model repository directory")
    parser.add_argument("--backend", choices=REPOSITORY_BACKENDS, default="python")
    parser.add_argument("--max-batch", type=int, default=8, help="most images per batch on the image side")
    parser.add_argument("--no-dynamic-batching", action="store_true", help="answer each image request alone")
    parser.add_argument("--instances", type=int, default=1, help="instances of each model (per GPU for onnx)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="python variant: where the server's torch runs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ovsam_model.triton.names import all_models
    from ovsam_model.triton.repository import RepositoryOptions, write_repository

    options = RepositoryOptions(backend=args.backend, max_batch_size=args.max_batch,
                                dynamic_batching=not args.no_dynamic_batching, instances=args.instances,
                                device=args.device)
    try:
        out = write_repository(args.model, args.out, weights_dir=args.weights, options=options)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(all_models())} ({args.backend}) to {out}")
    print(f"serve it: tritonserver --model-repository={out.resolve()}")
    return 0
