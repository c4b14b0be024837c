"""The ONNX Runtime backend: the exported image and prompt graphs run by onnxruntime.

The graphs come from `ensure_onnx` (exported once per set of weights, then cached). Sessions use
the CUDA execution provider when onnxruntime-gpu offers it and the model is on a GPU, else the CPU
one with as many threads as torch uses. The graphs are fp32: other precisions belong to the torch
(GPU) and TensorRT backends.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ovsam_model.modeling.ovsam import OVSAM, DecoderOutput, ImageFeatures

from .base import (
    LAYOUT_BOX,
    LAYOUT_POINTS,
    BackendUnavailableError,
    PromptArrays,
    check_precision,
    features_from_outputs,
    prompt_arrays,
)
from .onnx_export import OnnxFiles, ensure_onnx, read_export

logger = logging.getLogger(__name__)


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailableError(
            f"the onnxruntime backend needs the onnxruntime package ({error}); "
            "install it with `pip install onnxruntime` (or onnxruntime-gpu)") from error
    return onnxruntime


class OnnxRuntimeBackend:
    name = "onnxruntime"
    max_image_batch = 8  # the image graph is exported with a dynamic batch axis
    fallback_reason = ""  # set by create_backend when this backend stands in for another

    def __init__(self, model: OVSAM, precision: str = "fp32", *, onnx_dir: str | Path | None = None,
                 threads: int | None = None, export: bool = True) -> None:
        """onnx_dir: an export directory (default: the cache); export=False refuses to export and
        fails when the directory holds no export of these weights."""
        ort = import_onnxruntime()
        self.model = model.eval()
        self.precision = check_precision(precision)
        if precision != "fp32":
            logger.warning("the onnxruntime backend runs fp32 graphs; precision %s is used by the torch "
                           "(GPU) and tensorrt backends only", precision)
            self.precision = "fp32"
        self.files: OnnxFiles = ensure_onnx(model, onnx_dir) if export else read_export(onnx_dir)
        available = ort.get_available_providers()
        self.providers = ["CPUExecutionProvider"]
        if model.device.type == "cuda" and "CUDAExecutionProvider" in available:
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self._options = ort.SessionOptions()
        self._options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._options.intra_op_num_threads = threads or torch.get_num_threads()
        self._options.inter_op_num_threads = 1
        # Memory patterns pre-plan one block per input shape: on the 1024 model they added 2.4 GB
        # of resident memory (6.5 GB instead of 4.1 GB peak) for no measurable speed-up.
        self._options.enable_mem_pattern = False
        self._ort = ort
        self.image_session = self._session(self.files.image)
        self._prompt_sessions: dict[str, object] = {}

    @property
    def device(self) -> torch.device:
        return self.model.device

    def describe(self) -> str:
        return f"onnxruntime {self._ort.__version__} ({self.providers[0]}, fp32) from {self.files.directory}"

    def _session(self, path: Path, options=None):
        return self._ort.InferenceSession(str(path), options or self._options, providers=self.providers)

    def prompt_session(self, layout: str):
        session = self._prompt_sessions.get(layout)
        if session is None:
            session = self._session(self.files.prompt(layout))
            self._prompt_sessions[layout] = session
        return session

    def profiled_image_session(self, profile_prefix: str):
        """A second image session that writes an onnxruntime profile (per-node times) when ended."""
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._options.graph_optimization_level
        options.intra_op_num_threads = self._options.intra_op_num_threads
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
        return self._session(self.files.image, options)

    # -- the two halves ----------------------------------------------------------------------------
    def image_inputs(self, pixels: Tensor) -> dict[str, np.ndarray]:
        size = self.model.config.image_size
        if pixels.dim() != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[-2:]) != (size, size):
            raise ValueError(f"expected pixels [B, 3, {size}, {size}] (see preprocess), got {tuple(pixels.shape)}")
        return {"pixels": np.ascontiguousarray(pixels.detach().to("cpu", torch.float32).numpy())}

    def encode_image(self, pixels: Tensor) -> ImageFeatures:
        outputs = self.image_session.run(None, self.image_inputs(pixels))
        return features_from_outputs([self._to_model_device(output) for output in outputs])

    def decode(self, features: ImageFeatures, points: Tensor | None = None, point_labels: Tensor | None = None,
               boxes: Tensor | None = None) -> DecoderOutput:
        if features.embedding.shape[0] != 1:
            raise ValueError(f"decode works on one image's features, got a batch of {features.embedding.shape[0]}; "
                             "use features.select(i)")
        prompts = prompt_arrays(points, point_labels, boxes)
        feeds = {"embedding": _numpy(features.embedding)}
        feeds.update({f"fpn{index}": _numpy(level) for index, level in enumerate(features.fpn)})
        feeds.update(prompt_feeds(prompts))
        mask_logits, region_embedding, mask_boxes = self.prompt_session(prompts.layout).run(None, feeds)
        return DecoderOutput(mask_logits=self._to_model_device(mask_logits),
                             region_embedding=self._to_model_device(region_embedding),
                             mask_boxes=self._to_model_device(mask_boxes))

    def _to_model_device(self, array: np.ndarray) -> Tensor:
        return torch.from_numpy(array).to(self.device)


def prompt_feeds(prompts: PromptArrays) -> dict[str, np.ndarray]:
    """The prompt graph inputs for a batch (names as in graphs.prompt_input_names)."""
    if prompts.layout == LAYOUT_BOX:
        return {"boxes": prompts.boxes}
    feeds = {"points": prompts.points, "labels": prompts.labels}
    if prompts.layout != LAYOUT_POINTS:
        feeds["boxes"] = prompts.boxes
    return feeds


def _numpy(tensor: Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())
