"""Export OV-SAM to ONNX: one fixed-shape image graph and one prompt graph per token layout.

Files land in a directory with a manifest.json (model, weights fingerprint, opset, sha256 of each
file). The default place is a cache keyed by model name and weights fingerprint,
$OVSAM_CACHE_DIR/onnx/<model>-<fingerprint> (~/.cache/ovsam_ros/onnx/...), so the backends export
once per set of weights and ONNX files never need to live in git.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ovsam_model.cache_location import cache_root
from ovsam_model.modeling.ovsam import OVSAM

from .base import PROMPT_LAYOUTS
from .graphs import IMAGE_OUTPUTS, PROMPT_OUTPUTS, ImageGraph, PromptGraph, prompt_input_names

OPSET = 17  # RoiAlign with half-pixel (aligned) coordinates needs opset 16 or later
MANIFEST = "manifest.json"
IMAGE_FILE = "image.onnx"
FORMAT_VERSION = 1  # bump when the graphs change, so cached exports are redone
# Submodules whose weights end up in the graphs (the text tower and CLIP's attention pool do not).
GRAPH_PREFIXES = ("clip.visual.", "neck_student.", "fpn_neck.", "prompt_encoder.", "mask_decoder.")


class OnnxExportError(RuntimeError):
    """Export failed or an export directory is incomplete; the message names the file."""


def prompt_file(layout: str) -> str:
    return f"prompt_{layout}.onnx"


@dataclass
class OnnxFiles:
    directory: Path
    manifest: dict

    @property
    def image(self) -> Path:
        return self.directory / IMAGE_FILE

    def prompt(self, layout: str) -> Path:
        if layout not in self.manifest.get("layouts", []):
            raise OnnxExportError(f"{self.directory} has no prompt graph for layout {layout!r}")
        return self.directory / prompt_file(layout)

    def sha256(self, name: str) -> str:
        return self.manifest["sha256"][name]


def weights_fingerprint(model: OVSAM) -> str:
    """SHA-256 over the configuration and every value the exported graphs hold."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update(f"format {FORMAT_VERSION}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(GRAPH_PREFIXES):
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def default_export_dir(model: OVSAM, fingerprint: str | None = None) -> Path:
    fingerprint = fingerprint or weights_fingerprint(model)
    return cache_root() / "onnx" / f"{model.config.name}-{fingerprint[:16]}"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _example_features(model: OVSAM, device: torch.device) -> list[torch.Tensor]:
    config = model.config
    size = config.image_size
    embedding = torch.zeros(1, config.prompt_embed_dim, size // 16, size // 16, device=device)
    pyramid = [torch.zeros(1, config.fpn_channels, size // stride, size // stride, device=device)
               for stride in config.backbone_strides]
    return [embedding, *pyramid]


def _example_prompts(layout: str, size: int, device: torch.device) -> list[torch.Tensor]:
    # Two prompts of two points: sizes other than 1 keep the tracer from baking in a broadcast.
    points = torch.tensor([[[0.3, 0.4], [0.6, 0.5]], [[0.5, 0.5], [0.2, 0.7]]], device=device) * size
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]], device=device)
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.7], [0.3, 0.3, 0.9, 0.8]], device=device) * size
    return {"points": [points, labels], "box": [boxes], "points_box": [points, labels, boxes]}[layout]


def _export(module: torch.nn.Module, args: tuple, path: Path, input_names: Sequence[str],
            output_names: Sequence[str], dynamic_axes: dict) -> None:
    # The exporter restores the wrapper's training flag on every submodule afterwards: a wrapper
    # left in training mode would switch the shared OV-SAM modules (BatchNorm!) to training.
    module.eval()
    with warnings.catch_warnings():
        # The tracer warns about every Python-level shape computation; the graphs are fixed-layout
        # by design and the parity tests check the result.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, do_constant_folding=True)


def export_onnx(model: OVSAM, out_dir: str | Path, *, layouts: Sequence[str] = PROMPT_LAYOUTS,
                fingerprint: str | None = None) -> OnnxFiles:
    """Write image.onnx, prompt_<layout>.onnx and manifest.json into out_dir (created if needed)."""
    unknown = [layout for layout in layouts if layout not in PROMPT_LAYOUTS]
    if unknown:
        raise ValueError(f"unknown prompt layout(s) {unknown}; known: {', '.join(PROMPT_LAYOUTS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    device = model.device
    size = model.config.image_size
    fingerprint = fingerprint or weights_fingerprint(model)
    try:
        with torch.no_grad():
            pixels = torch.zeros(1, 3, size, size, device=device)
            image_axes = {"pixels": {0: "batch"}, **{name: {0: "batch"} for name in IMAGE_OUTPUTS}}
            _export(ImageGraph(model), (pixels,), out_dir / IMAGE_FILE, ["pixels"], IMAGE_OUTPUTS, image_axes)
            features = _example_features(model, device)
            for layout in layouts:
                names = prompt_input_names(layout)
                axes = {name: {0: "prompts"} for name in PROMPT_OUTPUTS}
                axes.update({"points": {0: "prompts", 1: "points"}, "labels": {0: "prompts", 1: "points"},
                             "boxes": {0: "prompts"}})
                axes = {name: axis for name, axis in axes.items() if name in names or name in PROMPT_OUTPUTS}
                graph = PromptGraph(model, layout).to(device)
                args = tuple(features + _example_prompts(layout, size, device))
                _export(graph, args, out_dir / prompt_file(layout), names, PROMPT_OUTPUTS, axes)
    except Exception as error:  # the tracer raises many types; say which model failed
        raise OnnxExportError(f"exporting {model.config.name} to ONNX in {out_dir} failed: "
                              f"{type(error).__name__}: {error}") from error
    files = [IMAGE_FILE] + [prompt_file(layout) for layout in layouts]
    manifest = {
        "format": FORMAT_VERSION,
        "model": model.config.name,
        "image_size": size,
        "fingerprint": fingerprint,
        "opset": OPSET,
        "torch": torch.__version__,
        "layouts": list(layouts),
        "image_outputs": list(IMAGE_OUTPUTS),
        "prompt_outputs": list(PROMPT_OUTPUTS),
        "sha256": {name: _file_sha256(out_dir / name) for name in files},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return OnnxFiles(out_dir, manifest)


def read_export(directory: str | Path) -> OnnxFiles:
    """An export directory's files; raises OnnxExportError when its manifest or a file is missing."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise OnnxExportError(f"{directory} holds no ONNX export ({MANIFEST} is missing); "
                              "create one with `ovsam-model export-onnx`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise OnnxExportError(f"{manifest_path} is not valid JSON ({error}); "
                              "delete the directory to re-export") from error
    missing = [name for name in manifest.get("sha256", {}) if not (directory / name).is_file()]
    if missing or "sha256" not in manifest:
        raise OnnxExportError(f"{directory} is an incomplete ONNX export (missing {missing or [MANIFEST]}); "
                              "delete it to re-export")
    return OnnxFiles(directory, manifest)


def ensure_onnx(model: OVSAM, directory: str | Path | None = None) -> OnnxFiles:
    """The model's ONNX export: reused when `directory` (default: the cache) already holds this
    model's weights with every layout, else exported there (into a temporary folder first, so a
    crash never leaves a half-written export behind)."""
    fingerprint = weights_fingerprint(model)
    target = Path(directory) if directory is not None else default_export_dir(model, fingerprint)
    try:
        existing = read_export(target)
        if (existing.manifest.get("fingerprint") == fingerprint and existing.manifest.get("format") == FORMAT_VERSION
                and set(PROMPT_LAYOUTS) <= set(existing.manifest.get("layouts", []))):
            return existing
    except OnnxExportError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        export_onnx(model, staging, fingerprint=fingerprint)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return read_export(target)
