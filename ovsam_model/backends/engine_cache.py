"""On-disk cache of serialized TensorRT engines.

An engine is only valid for the GPU model, compute capability, TensorRT version, CUDA runtime and
driver, precision, shape profile and ONNX graph it was built from: a stale engine fails to
deserialize or, worse, runs with the wrong weights. Every one of those goes into the key, so a
driver, CUDA or TensorRT upgrade, a new GPU or new weights builds a new engine instead of loading
an old one. Each engine file has a JSON
sidecar with its key in readable form. No TensorRT import here: the cache is plain files.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ovsam_model.atomic_file import write_atomically
from ovsam_model.cache_location import cache_root


def gpu_driver_version(proc_file: str | os.PathLike = "/proc/driver/nvidia/version") -> str:
    """The NVIDIA driver's version: the kernel module's ("550.54.15") where Linux shows it, else the
    CUDA driver API version from libcuda ("cuda-12040", Jetson and others), else "unknown"."""
    try:
        text = Path(proc_file).read_text()
        match = re.search(r"Kernel Module(?: for [\w-]+)?\s+([0-9][0-9.]*)", text)
        if match:
            return match.group(1)
    except OSError:
        pass
    try:
        library = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int()
        if library.cuDriverGetVersion(ctypes.byref(version)) == 0:
            return f"cuda-{version.value}"
    except (OSError, AttributeError):
        pass
    return "unknown"


@dataclass(frozen=True)
class EngineKey:
    graph: str               # "image", "prompt_points", ...
    onnx_sha256: str         # the ONNX file's content hash
    gpu_name: str            # torch.cuda.get_device_name()
    compute_capability: str  # "8.9"
    tensorrt_version: str
    cuda_version: str        # the CUDA runtime torch was built with (torch.version.cuda)
    driver_version: str      # the NVIDIA driver (gpu_driver_version())
    precision: str           # fp32 | fp16 | bf16
    profile: str             # the optimisation profile's shapes, as JSON

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def file_stem(self) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower() or "gpu"
        return (f"{self.graph}-{gpu}-sm{self.compute_capability.replace('.', '')}-trt{self.tensorrt_version}"
                f"-{self.precision}-{self.digest()[:16]}")


class EngineCache:
    """Serialized engines under `root` (default $OVSAM_CACHE_DIR/tensorrt, ~/.cache/ovsam_ros/tensorrt)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "tensorrt"

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.file_stem()}.engine"

    def _sidecar(self, key: EngineKey) -> Path:
        return self.root / f"{key.file_stem()}.json"

    def load(self, key: EngineKey) -> bytes | None:
        """The cached engine for exactly this key, or None."""
        path, sidecar = self.engine_path(key), self._sidecar(key)
        if not (path.is_file() and sidecar.is_file()):
            return None
        try:
            recorded = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if recorded != asdict(key):
            return None
        return path.read_bytes()

    def store(self, key: EngineKey, engine: bytes) -> Path:
        """Write atomically (temporary file + rename): readers never see half an engine."""
        path = self.engine_path(key)
        for target, payload in ((path, engine), (self._sidecar(key), json.dumps(asdict(key), indent=2).encode())):
            write_atomically(target, lambda stream: stream.write(payload))
        return path

    def discard(self, key: EngineKey) -> None:
        for path in (self.engine_path(key), self._sidecar(key)):
            path.unlink(missing_ok=True)

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> tuple[bytes, bool]:
        """(engine, built): the cached engine, or a new one from build() that is then cached."""
        cached = self.load(key)
        if cached is not None:
            return cached, False
        engine = build()
        self.store(key, engine)
        return engine, True
