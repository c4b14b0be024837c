"""Timing, memory and machine facts for the benchmark.

Samples are wall-clock milliseconds with the device synchronised before and after each stage, so
a GPU stage is charged for its kernels and not just their launch. Peak memory on the CPU is the
process's peak resident set (VmHWM), reset before each measured configuration where Linux allows
it; on a GPU it is torch's peak allocation.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from ovsam_model.benchmark.statistics import latency_summary

T = TypeVar("T")


def summarize(samples: list[float]) -> dict[str, Any]:
    """The project's latency summary (ovsam_model.benchmark.statistics) of millisecond samples."""
    if not samples:
        raise ValueError("no samples to summarize")
    return latency_summary(samples)


class Stopwatch:
    """Collects samples per stage name; `measure` runs a call once, timed, and returns its result."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.samples: dict[str, list[float]] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def measure(self, stage: str, call: Callable[[], T], record: bool = True) -> T:
        self._sync()
        started = time.perf_counter()
        result = call()
        self._sync()
        if record:
            self.samples.setdefault(stage, []).append((time.perf_counter() - started) * 1e3)
        return result

    def add(self, stage: str, value_ms: float) -> None:
        self.samples.setdefault(stage, []).append(value_ms)

    def summary(self) -> dict[str, dict[str, Any]]:
        return {stage: summarize(values) for stage, values in self.samples.items()}


def status_kib(field: str) -> int | None:
    """A kB field of this process's /proc/self/status ("VmRSS", "VmHWM"); None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of one measured configuration, in MiB."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.method = ""
        self.before_mb = 0.0

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before_mb = torch.cuda.memory_allocated(self.device) / 2**20
            self.method = "torch.cuda.max_memory_allocated"
            return
        try:
            # Writing 5 to clear_refs resets the peak RSS to the current RSS (Linux >= 4.0).
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM after reset"
        except OSError:
            self.method = "ru_maxrss (process lifetime: not reset per configuration)"
        current = status_kib("VmRSS")
        self.before_mb = (current or 0) / 1024

    def read(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            hwm = status_kib("VmHWM") if self.method.startswith("VmHWM") else None
            peak = (hwm / 1024) if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"peak_mb": round(peak, 1), "before_mb": round(self.before_mb, 1),
                "increase_mb": round(peak - self.before_mb, 1), "method": self.method}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_figures(path: str | Path | None, figures: dict[str, Any]) -> None:
    """A benchmark's figures as indented JSON at `path` (its folder made); nothing when `path` is None."""
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(figures, indent=2))


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        if hasattr(os, "sysconf") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": None,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_compute_capability"] = "{}.{}".format(*torch.cuda.get_device_capability(index))
        info["cuda"] = torch.version.cuda
    return info
