"""scripts/gpu-check in its CPU mode: the same checks on ovsam-tiny, so the GPU command cannot rot."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ovsam_model.benchmark.gpu_check import CheckResult, compare, format_table
from ovsam_model.instances import InstancePrediction

ROOT = Path(__file__).resolve().parents[2]


def _prediction(prompt_id: str, mask: np.ndarray, label: str, scores: list[float]) -> InstancePrediction:
    return InstancePrediction(prompt_id=prompt_id, mask=mask, mask_score=1.0, box=(0, 0, 1, 1), class_index=0,
                              label=label, score=scores[0], top_labels=[label, "other"], top_scores=scores)


def test_compare_flags_masks_and_decided_labels_only() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    shifted = np.roll(mask, 3, axis=1)
    reference = [_prediction("a", mask, "mug", [0.9, 0.1]), _prediction("b", mask, "cup", [0.501, 0.499])]
    same, problems = compare(reference, [_prediction("a", mask, "mug", [0.9, 0.1]),
                                         _prediction("b", mask, "bowl", [0.5, 0.5])],
                             {"min_mask_iou": 0.98, "label_margin": 0.01})
    # b's label differs, but the reference's lead (0.002) is below the margin: not counted.
    assert problems == [] and same["labels_compared"] == 1 and same["min_mask_iou"] == 1.0
    figures, problems = compare(reference[:1], [_prediction("a", shifted, "cup", [0.9, 0.1])],
                                {"min_mask_iou": 0.98, "label_margin": 0.01})
    assert figures["min_mask_iou"] == 0.3333 and len(problems) == 2


@pytest.mark.ros  # its node check starts the node and a camera
def test_cpu_mode_runs_every_cpu_capable_check(tmp_path: Path) -> None:
    environment = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    completed = subprocess.run([str(ROOT / "scripts" / "gpu-check"), "--cpu-mode"], cwd=ROOT, env=environment,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-check" / "gpu-check.json").read_text())
    status = {check["name"]: check for check in report["checks"]}
    assert status["torch_cpu"]["status"] == "ok"
    assert status["torch_cpu"]["figures"]["fp32"]["labels_compared"] > 0
    assert status["onnxruntime"]["status"] == "ok"
    assert status["tensorrt"]["status"] == "skipped" and "TensorRT" in status["tensorrt"]["reason"]
    assert status["bench"]["status"] == "ok"
    assert all(row["frame_10_p50_ms"] > 0 for row in status["bench"]["figures"].values())
    assert status["batched_encode"]["status"] == "ok"
    assert status["batched_encode"]["figures"]["two_frames_batched_p50_ms"] > 0
    assert status["node"]["status"] == "ok", status["node"]["reason"]
    assert status["node"]["figures"]["answered"] > 0
    assert "| torch_cpu | ok |" in (tmp_path / "gpu-check" / "gpu-check.md").read_text()


def test_the_table_says_why_a_check_did_not_run() -> None:
    report = {"plan": {"device": "cuda", "model": "ovsam-rn50x16"}, "gpu": "NVIDIA H200",
              "checks": [CheckResult("tensorrt", "skipped", "TensorRT is not importable here").__dict__]}
    assert "| tensorrt | skipped | 0.0 | TensorRT is not importable here |" in format_table(report)
