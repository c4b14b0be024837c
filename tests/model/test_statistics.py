"""The one percentile rule behind every latency figure (bench, soak, 3D bench, node diagnostics)."""
from __future__ import annotations

import pytest

from ovsam_model.benchmark.statistics import latency_summary, percentile


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(range(1, 21), 95) == pytest.approx(19.05)
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0 and percentile([3.0, 1.0, 2.0], 100) == 3.0


def test_no_samples_give_none_and_a_bad_q_is_refused() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_latency_summary() -> None:
    summary = latency_summary([4.0, 1.0, 3.0, 2.0])
    assert summary == {"samples": 4, "p50_ms": 2.5, "p95_ms": pytest.approx(3.85), "p99_ms": pytest.approx(3.97),
                       "mean_ms": 2.5, "min_ms": 1.0, "max_ms": 4.0}
    assert latency_summary([]) == {"samples": 0}
