"""The TensorRT backend: engines built from the ONNX graphs on first use, cached on disk.

Standard TensorRT Python API only: trt.Builder + OnnxParser + build_serialized_network to build,
trt.Runtime to deserialize, an execution context with tensor addresses taken from torch CUDA
tensors to run (no pycuda). Engines are cached by EngineCache, keyed by GPU name, compute
capability, TensorRT version, precision, shape profile and ONNX hash. This module imports
tensorrt only when the backend is created; without TensorRT or a GPU it raises
BackendUnavailableError, which `create_backend` turns into a fallback with a message.

Not exercised by CI (no GPU there): its tests skip with the reason.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from torch import Tensor

from ovsam_model.modeling.ovsam import OVSAM, DecoderOutput, ImageFeatures
from ovsam_model.prompts import MAX_POINTS_PER_PROMPT

from .base import (
    LAYOUT_BOX,
    LAYOUT_POINTS,
    BackendUnavailableError,
    check_precision,
    features_from_outputs,
    prompt_arrays,
)
from .engine_cache import EngineCache, EngineKey, gpu_driver_version
from .graphs import IMAGE_OUTPUTS, PROMPT_OUTPUTS
from .onnx_export import ensure_onnx
from .onnxruntime_backend import prompt_feeds

logger = logging.getLogger(__name__)

DEFAULT_MAX_PROMPTS = 64  # the predictor's default max_batch; larger batches are split
TYPICAL_PROMPTS = 10


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as error:
        raise BackendUnavailableError(
            f"the tensorrt backend needs NVIDIA TensorRT ({error}); on a machine with an NVIDIA GPU install "
            "it with `pip install tensorrt-cu12` (or tensorrt-cu13, matching your CUDA), or use the Jetson's own"
        ) from error
    return tensorrt


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.bool: torch.bool}
    for name, torch_type in (("bfloat16", torch.bfloat16), ("int64", torch.int64)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = torch_type
    return table[dtype]


def build_engine(trt, trt_logger, onnx_path: Path, shapes: dict[str, tuple[tuple[int, ...], ...]], precision: str,
                 workspace_bytes: int) -> bytes:
    """Serialize an engine for `onnx_path` with one optimisation profile {input: (min, opt, max)}."""
    builder = trt.Builder(trt_logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        if not hasattr(trt.BuilderFlag, "BF16"):
            raise BackendUnavailableError(f"TensorRT {trt.__version__} has no bf16 support; use precision fp16")
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for name, (smallest, typical, largest) in shapes.items():
        profile.set_shape(name, smallest, typical, largest)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} ({precision}); "
                           "its log above says why")
    return bytes(serialized)


class _Engine:
    """One deserialized engine and its execution context; runs on torch's current CUDA stream."""

    def __init__(self, trt, engine) -> None:
        self._trt = trt
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def run(self, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        keep_alive = []
        for name in self.inputs:
            dtype = _torch_dtype(self._trt, self.engine.get_tensor_dtype(name))
            tensor = torch.as_tensor(feeds[name]).to(device="cuda", dtype=dtype).contiguous()
            keep_alive.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            dtype = _torch_dtype(self._trt, self.engine.get_tensor_dtype(name))
            output = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            outputs[name] = output
            self.context.set_tensor_address(name, output.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed; see the TensorRT log")
        stream.synchronize()
        return outputs


class TensorRTBackend:
    name = "tensorrt"
    max_image_batch = 1  # the image engine is built for [1, 3, S, S]
    fallback_reason = ""  # set by create_backend when this backend stands in for another

    def __init__(self, model: OVSAM, precision: str = "fp16", *, onnx_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, max_prompts: int = DEFAULT_MAX_PROMPTS,
                 max_points: int = MAX_POINTS_PER_PROMPT, workspace_gb: float = 4.0) -> None:
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise BackendUnavailableError("the tensorrt backend needs an NVIDIA GPU, and this torch sees none")
        if model.device.type != "cuda":
            raise BackendUnavailableError(
                f"the model is on {model.device}; the tensorrt backend runs on the GPU: use device 'auto' or 'cuda'")
        self._trt = trt
        self.model = model.eval()
        self.precision = check_precision(precision)
        self.max_prompts = int(max_prompts)
        self.max_points = int(max_points)
        self.workspace_bytes = int(workspace_gb * (1 << 30))
        self.trt_logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.trt_logger, "")  # RoiAlign comes from the plugin library
        self.runtime = trt.Runtime(self.trt_logger)
        self.cache = EngineCache(cache_dir)
        self.files = ensure_onnx(model, onnx_dir)
        index = model.device.index if model.device.index is not None else torch.cuda.current_device()
        self.gpu_name = torch.cuda.get_device_name(index)
        self.compute_capability = "{}.{}".format(*torch.cuda.get_device_capability(index))
        self.engines_built: list[str] = []
        self.image_engine = self._engine("image", self.files.image, self.files.sha256(self.files.image.name),
                                         self._image_shapes())
        self._prompt_engines: dict[str, _Engine] = {}

    @property
    def device(self) -> torch.device:
        return self.model.device

    def describe(self) -> str:
        return (f"tensorrt {self._trt.__version__} ({self.precision}) on {self.gpu_name} "
                f"(sm {self.compute_capability}), engines in {self.cache.root}")

    # -- engines -----------------------------------------------------------------------------------
    def _image_shapes(self) -> dict[str, tuple[tuple[int, ...], ...]]:
        size = self.model.config.image_size
        fixed = (1, 3, size, size)
        return {"pixels": (fixed, fixed, fixed)}

    def _prompt_shapes(self, layout: str) -> dict[str, tuple[tuple[int, ...], ...]]:
        config = self.model.config
        size = config.image_size
        grid = size // 16
        shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
        embedding = (1, config.prompt_embed_dim, grid, grid)
        shapes["embedding"] = (embedding, embedding, embedding)
        for index, stride in enumerate(config.backbone_strides):
            level = (1, config.fpn_channels, size // stride, size // stride)
            shapes[f"fpn{index}"] = (level, level, level)
        many, typical = self.max_prompts, TYPICAL_PROMPTS
        if layout != LAYOUT_BOX:
            shapes["points"] = ((1, 1, 2), (typical, 1, 2), (many, self.max_points, 2))
            shapes["labels"] = ((1, 1), (typical, 1), (many, self.max_points))
        if layout != LAYOUT_POINTS:
            shapes["boxes"] = ((1, 4), (typical, 4), (many, 4))
        return shapes

    def _engine(self, graph: str, onnx_path: Path, onnx_sha256: str,
                shapes: dict[str, tuple[tuple[int, ...], ...]]) -> _Engine:
        key = EngineKey(graph=graph, onnx_sha256=onnx_sha256, gpu_name=self.gpu_name,
                        compute_capability=self.compute_capability, tensorrt_version=self._trt.__version__,
                        cuda_version=str(torch.version.cuda), driver_version=gpu_driver_version(),
                        precision=self.precision, profile=json.dumps(shapes, sort_keys=True))

        def build() -> bytes:
            logger.warning("building the TensorRT %s engine for %s (%s); this takes minutes once, then it is cached "
                           "in %s", graph, self.model.config.name, self.precision, self.cache.root)
            started = time.perf_counter()
            engine = build_engine(self._trt, self.trt_logger, onnx_path, shapes, self.precision, self.workspace_bytes)
            self.engines_built.append(graph)
            logger.warning("built the %s engine in %.0f s", graph, time.perf_counter() - started)
            return engine

        data, _ = self.cache.get_or_build(key, build)
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:  # a damaged file that still matched its key: rebuild it once
            self.cache.discard(key)
            data, _ = self.cache.get_or_build(key, build)
            engine = self.runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise RuntimeError(f"TensorRT cannot deserialize the engine it just built for {graph}")
        return _Engine(self._trt, engine)

    def prompt_engine(self, layout: str) -> _Engine:
        engine = self._prompt_engines.get(layout)
        if engine is None:
            path = self.files.prompt(layout)
            engine = self._engine(f"prompt_{layout}", path, self.files.sha256(path.name), self._prompt_shapes(layout))
            self._prompt_engines[layout] = engine
        return engine

    # -- the two halves ----------------------------------------------------------------------------
    def encode_image(self, pixels: Tensor) -> ImageFeatures:
        size = self.model.config.image_size
        if tuple(pixels.shape) != (1, 3, size, size):
            raise ValueError(f"the tensorrt image engine takes pixels [1, 3, {size}, {size}], "
                             f"got {tuple(pixels.shape)}")
        outputs = self.image_engine.run({"pixels": pixels.float()})
        return features_from_outputs([outputs[name].float() for name in IMAGE_OUTPUTS])

    def decode(self, features: ImageFeatures, points: Tensor | None = None, point_labels: Tensor | None = None,
               boxes: Tensor | None = None) -> DecoderOutput:
        if features.embedding.shape[0] != 1:
            raise ValueError("decode works on one image's features; use features.select(i)")
        prompts = prompt_arrays(points, point_labels, boxes)
        if prompts.points.shape[1] > self.max_points:
            raise ValueError(f"the tensorrt engines take at most {self.max_points} points per prompt, "
                             f"got {prompts.points.shape[1]}")
        engine = self.prompt_engine(prompts.layout)
        base = {"embedding": features.embedding, **{f"fpn{i}": level for i, level in enumerate(features.fpn)}}
        pieces: dict[str, list[Tensor]] = {name: [] for name in PROMPT_OUTPUTS}
        for start in range(0, prompts.count, self.max_prompts):
            chunk = prompts.rows(start, start + self.max_prompts)
            feeds = dict(base)
            feeds.update({name: torch.from_numpy(array) for name, array in prompt_feeds(chunk).items()})
            outputs = engine.run(feeds)
            for name in PROMPT_OUTPUTS:
                pieces[name].append(outputs[name].float())
        mask_logits, region_embedding, mask_boxes = (torch.cat(pieces[name]) for name in PROMPT_OUTPUTS)
        return DecoderOutput(mask_logits=mask_logits, region_embedding=region_embedding, mask_boxes=mask_boxes)
