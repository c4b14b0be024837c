"""The names of the devices, backends and precisions every layer accepts.

Torch-free on purpose: the ROS node process validates its parameters against these without
importing torch (the model runs in a child process), and `ovsam_model.backends` builds on the
same tuples, so a new backend is added in one place.
"""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")
BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
