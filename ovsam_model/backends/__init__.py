"""Inference backends for OV-SAM: torch (eager, fp16/bf16, channels-last, compile), onnxruntime
(the exported graphs) and tensorrt (engines built from them, cached).

`create_backend(model, name, precision)` picks one; a TensorRT request on a machine without
TensorRT or a GPU logs why and falls back (torch on a GPU, else onnxruntime) unless
fallback=False. Backend modules are imported only when selected.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.runtime_choices import BACKEND_NAMES, PRECISIONS

from .base import BackendUnavailableError, InferenceBackend

logger = logging.getLogger(__name__)

__all__ = ["BACKEND_NAMES", "PRECISIONS", "BackendUnavailableError", "InferenceBackend", "create_backend",
           "available_backends"]


def create_backend(model: OVSAM, name: str = "torch", precision: str = "fp32", *, fallback: bool = True,
                   **options: Any) -> InferenceBackend:
    """A backend running `model`; options go to the backend's constructor (see each module)."""
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(model, precision, **options)
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, precision, **options)
    if name == "tensorrt":
        try:
            from .tensorrt_backend import TensorRTBackend

            return TensorRTBackend(model, precision, **options)
        except BackendUnavailableError as error:
            if not fallback:
                raise
            substitute = _fallback_for(model)
            logger.warning("TensorRT is not usable here: %s. Falling back to the %s backend.", error, substitute)
            shared = {"onnx_dir": options["onnx_dir"]} if substitute == "onnxruntime" and "onnx_dir" in options else {}
            backend = create_backend(model, substitute, precision if substitute == "torch" else "fp32", **shared)
            backend.fallback_reason = str(error)
            return backend
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


def _fallback_for(model: OVSAM) -> str:
    if model.device.type == "cuda":
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnxruntime"


def available_backends() -> list[str]:
    """Backends whose packages (and, for TensorRT, a GPU) are present on this machine."""
    import importlib.util

    names = ["torch"]
    if importlib.util.find_spec("onnxruntime") is not None:
        names.append("onnxruntime")
    if importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available():
        names.append("tensorrt")
    return names
