"""`ovsam-model export-onnx`: write the model's ONNX graphs (image part + one prompt graph per layout).

    ovsam-model export-onnx --model NAME [--weights DIR] [--clip-weights FILE] --out DIR [--no-check]

Without --weights the graphs hold random weights (enough for speed measurements). After export
the graphs are run with onnxruntime on a random image and prompts and compared with PyTorch
(--no-check skips that): exit 0 when they agree, 1 when they do not, 2 on a usage error.
The backends export on their own into the cache; this command is for shipping or inspecting files.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Largest differences accepted against PyTorch, relative to the largest magnitude of the output;
# a mask box may move by one low-resolution cell (4 input pixels) where a logit sits at zero.
PARITY_TOLERANCE = 1e-3
BOX_TOLERANCE_PX = 4.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export-onnx", help="export the model to ONNX (image part and prompt part)")
    parser.add_argument("--model", default="ovsam-shapes",
                        help="configuration name or JSON file (default: ovsam-shapes)")
    parser.add_argument("--weights", default=None, metavar="DIR", help="weights directory (default: random weights)")
    parser.add_argument("--clip-weights", default=None, metavar="FILE", help="CLIP weights file, if not in --weights")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the .onnx files and manifest.json")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch comparison")
    parser.set_defaults(handler=run)


def parity_report(model, files, seed: int = 0) -> list[tuple[str, float, float]]:
    """(output, difference, limit) on a random image and prompts of each layout: max |onnxruntime - torch|
    relative to max |torch|, in pixels for mask boxes."""
    import torch

    from ovsam_model.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(model, onnx_dir=files.directory, export=False)
    generator = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    pixels = torch.randn(1, 3, size, size, generator=generator)
    points = torch.rand(3, 2, 2, generator=generator) * size
    labels = torch.tensor([[1, 0], [1, 1], [1, 0]])
    corners = torch.rand(3, 2, generator=generator) * size / 2
    boxes = torch.cat([corners, corners + size / 4], dim=1)
    report = []
    with torch.no_grad():
        expected = model.encode_image(pixels.to(model.device))
        actual = backend.encode_image(pixels)
        for name, a, b in (("embedding", actual.embedding, expected.embedding),
                           ("fpn0", actual.fpn[0], expected.fpn[0]),
                           ("clip_last", actual.clip_last, expected.clip_last)):
            report.append((f"image/{name}", _relative(a, b), PARITY_TOLERANCE))
        for layout, args in (("points", (points, labels, None)), ("box", (None, None, boxes)),
                             ("points_box", (points, labels, boxes))):
            want = model.decode(expected, *args)
            got = backend.decode(expected, *args)
            for name in ("mask_logits", "region_embedding"):
                report.append((f"{layout}/{name}", _relative(getattr(got, name), getattr(want, name)),
                               PARITY_TOLERANCE))
            box_difference = float((got.mask_boxes.cpu() - want.mask_boxes.cpu()).abs().max())
            report.append((f"{layout}/mask_boxes (px)", box_difference, BOX_TOLERANCE_PX))
    return report


def _relative(actual, expected) -> float:
    scale = float(expected.abs().max()) or 1.0
    return float((actual.float().cpu() - expected.float().cpu()).abs().max()) / scale


def run(args: argparse.Namespace) -> int:
    from ovsam_model.backends.onnx_export import OnnxExportError, export_onnx
    from ovsam_model.checkpoint import CheckpointError, load_weights
    from ovsam_model.config import ConfigError
    from ovsam_model.modeling.ovsam import build_model

    try:
        model = build_model(args.model)
        if args.weights:
            load_weights(model, args.weights, clip_weights=args.clip_weights)
        else:
            print(f"no --weights: exporting {model.config.name} with random weights (for speed tests only)")
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        files = export_onnx(model, Path(args.out))
    except OnnxExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"exported {model.config.name} in {time.perf_counter() - started:.1f} s to {files.directory}:")
    for name, digest in files.manifest["sha256"].items():
        size_mb = (files.directory / name).stat().st_size / 2**20
        print(f"  {name:<24} {size_mb:9.1f} MiB  sha256 {digest[:16]}")
    if args.no_check:
        return 0
    failures = 0
    for name, difference, limit in parity_report(model, files):
        ok = difference <= limit
        failures += not ok
        print(f"  parity {name:<30} max difference {difference:.2e} (limit {limit:g}) {'ok' if ok else 'TOO LARGE'}")
    if failures:
        print(f"{failures} output(s) differ from PyTorch beyond their limit", file=sys.stderr)
        return 1
    print("onnxruntime matches PyTorch")
    return 0
