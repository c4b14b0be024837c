"""The training-precision benchmark times what it says: real steps of the CLIP stage and of the teacher,
each precision's steps in that precision, and reports their ratio."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from ovsam_model.benchmark.training_precision import bench_training_precision, main, stage_steps
from ovsam_model.config import get_config
from ovsam_model.synthetic import generate_scene_set
from ovsam_model.synthetic.classes import BASE_INDICES
from ovsam_model.training import clip_stage, precision, teacher


def test_each_precisions_steps_run_in_that_precision_and_the_ratio_is_of_the_medians(monkeypatch) -> None:
    calls: Counter = Counter()

    def recording(module_name: str):
        def forward_precision(name: str, device_type: str = "cpu"):
            calls[(module_name, name)] += 1
            return precision.forward_precision(name, device_type)
        return forward_precision

    monkeypatch.setattr(clip_stage, "forward_precision", recording("clip"))
    monkeypatch.setattr(teacher, "forward_precision", recording("teacher"))
    config = get_config("ovsam-shapes")
    scenes = generate_scene_set(4, seed=(5, 1), classes=BASE_INDICES)
    result = bench_training_precision(stage_steps(config, scenes, clip_batch=4, teacher_images=1), repeats=2, warmup=1)
    # 3 steps per stage and precision: the CLIP stage enters its precision once a step (both towers),
    # the teacher three times (its encoder, then the decoder for box and for point prompts).
    assert calls == {("clip", "fp32"): 3, ("clip", "bf16"): 3, ("teacher", "fp32"): 9, ("teacher", "bf16"): 9}
    for stage in ("clip", "teacher"):
        assert result[stage]["fp32"]["samples"] == result[stage]["bf16"]["samples"] == 2
        assert result[stage]["ratio_bf16_to_fp32"] == pytest.approx(
            result[stage]["bf16"]["p50_ms"] / result[stage]["fp32"]["p50_ms"])


def test_the_command_prints_both_ratios_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "precision.json"
    assert main(["--steps", "1", "--clip-batch", "4", "--teacher-images", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("ratio bf16 / fp32") == 2
    written = json.loads(out.read_text())
    assert {"clip", "teacher", "machine"} <= set(written)
