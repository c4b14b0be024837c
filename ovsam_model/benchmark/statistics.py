"""The one percentile rule of the project's benchmarks, soaks and diagnostics.

Percentiles interpolate linearly between the two nearest ranks (numpy's default, "linear"):
p50 of [1, 2, 3, 4] is 2.5 and p95 of 1..20 is 19.05. Every figure the docs report (bench, soak,
3D bench, the node's diagnostics) comes through here, so two tables never disagree on what p95
means. numpy only: the node process imports this without torch.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) of `values`, or None when there are none."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"a percentile is between 0 and 100, got {q}")
    samples = np.asarray(list(values), dtype=np.float64)
    if samples.size == 0:
        return None
    return float(np.percentile(samples, q))


def latency_summary(values_ms: Iterable[float]) -> dict[str, float | int]:
    """samples, p50/p95/p99, mean, min and max of millisecond samples; {"samples": 0} for none."""
    samples = np.asarray(list(values_ms), dtype=np.float64)
    if samples.size == 0:
        return {"samples": 0}
    p50, p95, p99 = (float(v) for v in np.percentile(samples, [50, 95, 99]))
    return {"samples": int(samples.size), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "mean_ms": float(samples.mean()), "min_ms": float(samples.min()), "max_ms": float(samples.max())}
