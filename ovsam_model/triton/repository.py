"""Write a Triton model repository for one OV-SAM model: the image model and one prompt model per layout.

    REPO/ovsam_image/config.pbtxt            pixels [B, 3, S, S] -> embedding, fpn0..3, clip_last
    REPO/ovsam_image/1/model.py | model.onnx
    REPO/ovsam_prompt_<layout>/config.pbtxt  features of one image + N prompts -> masks, region embeddings
    REPO/ovsam_prompt_<layout>/1/model.py | model.onnx

Only the image side batches across requests (Triton's dynamic batcher): a prompt request carries
one image's features and its own number of prompts, so two clients' prompt requests cannot share
a batch dimension. Naming against the vocabulary stays in the client: it is a matrix product on a
few region embeddings, the vocabulary is per node (each node's `vocabulary` parameter and
set_vocabulary service) and the text tower it needs is small, so the server stays stateless and
every node can name with its own vocabulary.

The Python-backend variant imports the server's installed `ovsam_model` and loads the weights
from the `weights_dir` written into config.pbtxt (a path as the server sees it; empty = the
weights shipped in the package). The ONNX variant holds the graphs of
`ovsam_model.backends.onnx_export` and needs no Python on the server.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ovsam_model.config import OVSAMConfig, get_config
from ovsam_model.triton.names import (
    IMAGE_INPUT,
    IMAGE_MODEL,
    IMAGE_OUTPUTS,
    PROMPT_LAYOUTS,
    PROMPT_OUTPUTS,
    REPOSITORY_BACKENDS,
    prompt_inputs,
    prompt_model,
)

PYTHON_MODEL_SHIM = '''\
# Written by `ovsam-model triton-repo`: the server runs the installed ovsam_model's own torch modules.
import os
import sys

# Triton's Python-backend stub starts its interpreter ignoring PYTHONPATH; honour it here so a
# server can run ovsam_model from a source tree or another environment's site-packages.
for _path in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)

from ovsam_model.triton.python_model import TritonPythonModel  # noqa: E402,F401
'''


@dataclass(frozen=True)
class RepositoryOptions:
    backend: str = "python"
    max_batch_size: int = 8            # images per batch on the image side
    dynamic_batching: bool = True
    max_queue_delay_us: int = 2000     # how long the batcher waits for more images
    instances: int = 1                 # model instances per model (per GPU with the ONNX variant)
    device: str = "auto"               # Python backend: where its torch runs


def _dims(values: tuple[int, ...] | list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensor_block(kind: str, tensors: list[tuple[str, tuple[int, ...]]]) -> str:
    entries = ",\n".join(f'  {{ name: "{name}" data_type: TYPE_FP32 dims: {_dims(dims)} }}' for name, dims in tensors)
    return f"{kind} [\n{entries}\n]\n"


def feature_shapes(config: OVSAMConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of one image's features (no batch dimension), by output name."""
    size = config.image_size
    shapes: dict[str, tuple[int, ...]] = {
        "embedding": (config.prompt_embed_dim, config.embedding_size, config.embedding_size)}
    for level, stride in enumerate(config.backbone_strides):
        shapes[f"fpn{level}"] = (config.fpn_channels, size // stride, size // stride)
    last = size // config.backbone_strides[-1]
    shapes["clip_last"] = (config.backbone_channels[-1], last, last)
    return shapes


def prompt_shapes(config: OVSAMConfig) -> dict[str, tuple[int, ...]]:
    low_res = config.image_size // 4
    return {"points": (-1, -1, 2), "labels": (-1, -1), "boxes": (-1, 4),
            "mask_logits": (-1, 1, low_res, low_res), "region_embedding": (-1, config.text_dim), "mask_boxes": (-1, 4)}


def _header(name: str, options: RepositoryOptions) -> str:
    if options.backend == "python":
        return f'name: "{name}"\nbackend: "python"\n'
    return f'name: "{name}"\nplatform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"\n'


def _instances(options: RepositoryOptions) -> str:
    # The Python backend places its torch itself (parameter "device"); ONNX instances go to the
    # GPUs when there are any (Triton's default for KIND_AUTO).
    kind = "KIND_CPU" if options.backend == "python" else "KIND_AUTO"
    return f"instance_group [ {{ count: {options.instances} kind: {kind} }} ]\n"


def _parameters(values: dict[str, str]) -> str:
    return "".join(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
                   for key, value in values.items())


def image_config(config: OVSAMConfig, options: RepositoryOptions, python_parameters: dict[str, str]) -> str:
    size = config.image_size
    shapes = feature_shapes(config)
    text = _header(IMAGE_MODEL, options) + f"max_batch_size: {options.max_batch_size}\n"
    text += _tensor_block("input", [(IMAGE_INPUT, (3, size, size))])
    text += _tensor_block("output", [(name, shapes[name]) for name in IMAGE_OUTPUTS])
    if options.dynamic_batching:
        text += f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
    text += _instances(options)
    if options.backend == "python":
        text += _parameters({"role": "image", **python_parameters})
    return text


def prompt_config(config: OVSAMConfig, layout: str, options: RepositoryOptions,
                  python_parameters: dict[str, str]) -> str:
    features = feature_shapes(config)
    shapes = {**{name: (1, *dims) for name, dims in features.items()}, **prompt_shapes(config)}
    text = _header(prompt_model(layout), options) + "max_batch_size: 0\n"
    text += _tensor_block("input", [(name, shapes[name]) for name in prompt_inputs(layout)])
    text += _tensor_block("output", [(name, shapes[name]) for name in PROMPT_OUTPUTS])
    text += _instances(options)
    if options.backend == "python":
        text += _parameters({"role": layout, **python_parameters})
    return text


def write_repository(model: str, out: str | Path, *, weights_dir: str | Path | None = None,
                     options: RepositoryOptions = RepositoryOptions()) -> Path:
    """Write the repository for `model` into `out` (replacing the four OV-SAM models there)."""
    if options.backend not in REPOSITORY_BACKENDS:
        raise ValueError(f"backend {options.backend!r} is not one of {', '.join(REPOSITORY_BACKENDS)}")
    if options.max_batch_size < 1 or options.instances < 1:
        raise ValueError("max_batch_size and instances must be at least 1")
    config = get_config(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    python_parameters = {"ovsam_model": model, "weights_dir": str(weights_dir or ""), "device": options.device}
    configs = {IMAGE_MODEL: image_config(config, options, python_parameters)}
    for layout in PROMPT_LAYOUTS:
        configs[prompt_model(layout)] = prompt_config(config, layout, options, python_parameters)
    onnx_files = _export_onnx(model, weights_dir) if options.backend == "onnx" else None
    try:
        for name, text in configs.items():
            directory = out / name
            if directory.exists():
                shutil.rmtree(directory)
            (directory / "1").mkdir(parents=True)
            (directory / "config.pbtxt").write_text(text)
            if onnx_files is None:
                (directory / "1" / "model.py").write_text(PYTHON_MODEL_SHIM)
            else:
                shutil.copyfile(onnx_files / _onnx_name(name), directory / "1" / "model.onnx")
    finally:
        if onnx_files is not None:
            shutil.rmtree(onnx_files, ignore_errors=True)
    return out


def _onnx_name(triton_model: str) -> str:
    from ovsam_model.backends.onnx_export import IMAGE_FILE, prompt_file

    if triton_model == IMAGE_MODEL:
        return IMAGE_FILE
    return prompt_file(triton_model.removeprefix("ovsam_prompt_"))


def _export_onnx(model: str, weights_dir: str | Path | None) -> Path:
    """The project's ONNX export of the model with its weights, in a temporary directory."""
    from ovsam_model.backends.onnx_export import export_onnx
    from ovsam_model.build import build_predictor

    network = build_predictor(model, weights_dir, device="cpu").model
    directory = Path(tempfile.mkdtemp(prefix="ovsam-triton-onnx-"))
    export_onnx(network, directory)
    return directory
