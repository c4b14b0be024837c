"""`ovsam-model bench` at CI size: a real run on the tiny configuration writes JSON with every stage,
the baseline, the ratios and the targets; the statistics and verdicts are checked on known inputs."""
from __future__ import annotations

import json
import math
import os

import pytest

from ovsam_model.benchmark.report import evaluate_targets, format_report, ratios_to_baseline
from ovsam_model.benchmark.timing import summarize
from ovsam_model.cli import main

COUNTS = (1, 3)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> tuple[int, dict, str]:
    out = tmp_path_factory.mktemp("bench")

    previous = os.environ.get("OVSAM_CACHE_DIR")
    os.environ["OVSAM_CACHE_DIR"] = str(out / "cache")  # the ONNX export goes to a private cache
    json_path = out / "bench.json"
    try:
        code = main(["bench", "--quick", "--models", "ovsam-tiny", "--prompts", ",".join(map(str, COUNTS)),
                     "--repeats", "2", "--warmup", "1", "--frame-size", "96x64", "--vocabulary-size", "30",
                     "--threads", "1", "--json", str(json_path)])
    finally:
        if previous is None:
            del os.environ["OVSAM_CACHE_DIR"]
        else:
            os.environ["OVSAM_CACHE_DIR"] = previous
    return code, json.loads(json_path.read_text()), json_path.with_suffix(".md").read_text()


def test_quick_bench_writes_every_stage_for_every_backend(bench_run) -> None:
    code, results, _ = bench_run
    assert code == 0
    assert results["machine"]["cpu_cores"] >= 1 and results["machine"]["torch_threads"] == 1
    runs = {run["variant"]["backend"]: run for run in results["runs"]}
    assert set(runs) == {"torch", "onnxruntime"}
    for _, run in runs.items():
        assert "error" not in run
        stages = run["stages"]
        expected = {"preprocess", "image_part"}
        expected |= {f"{stage}_{n}" for stage in ("decode", "recognition", "postprocess", "prompt_side", "frame")
                     for n in COUNTS}
        assert expected <= set(stages), sorted(expected - set(stages))
        for name in expected:
            entry = stages[name]
            assert entry["samples"] == 2
            assert 0 < entry["p50_ms"] <= entry["p95_ms"]
        assert run["memory"]["peak_mb"] > 0
    # torch times the three image stages apart; their sum per frame is the image part.
    torch_stages = runs["torch"]["stages"]
    parts = sum(torch_stages[s]["p50_ms"] for s in ("backbone", "adapter", "fpn"))
    assert torch_stages["image_part"]["min_ms"] <= parts * 1.5
    shares = runs["onnxruntime"]["image_part_shares"]
    assert set(shares) == {"backbone", "adapter", "fpn", "other"}
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-6) and shares["adapter"] > 0
    assert runs["onnxruntime"]["stages"]["adapter_from_profile"]["p50_ms"] > 0


def test_quick_bench_compares_with_the_baseline_and_checks_the_targets(bench_run) -> None:
    _, results, report = bench_run
    (baseline,) = results["baselines"]
    assert baseline["kind"] == "miniature" and baseline["device"] == "cpu"
    for n in COUNTS:
        for stage in ("sam_decode", "clip_crops", "recognition", "frame"):
            assert baseline["stages"][f"{stage}_{n}"]["samples"] == 1
    ratios = results["ratios_to_baseline"]
    assert len(ratios) == 2 and not any(r["paper_comparison"] for r in ratios)
    for ratio in ratios:
        run = next(r for r in results["runs"] if r["label"] == ratio["run"])
        for n in COUNTS:
            expected = run["stages"][f"frame_{n}"]["p50_ms"] / baseline["stages"][f"frame_{n}"]["p50_ms"]
            assert math.isclose(ratio["ours_over_baseline"][str(n)], expected)
    names = {target["target"] for target in results["targets"]}
    assert "prompt on an encoded frame / full frame" in names
    assert "onnxruntime speed-up over torch eager, image part, CPU" in names
    gpu = next(t for t in results["targets"] if t["target"].startswith("frames/s"))
    assert gpu["met"] is None and "no CUDA GPU" in gpu["note"]
    for heading in ("### ovsam-tiny", "### Baseline", "### Ours / baseline per frame", "### Targets"):
        assert heading in report


def test_summarize_uses_the_project_percentile() -> None:
    stats = summarize([float(v) for v in range(1, 21)])  # 1..20 ms
    # Linear interpolation between ranks: p95 of 1..20 lies 5 % of the way from 19 to 20.
    assert stats["p50_ms"] == 10.5 and stats["p95_ms"] == pytest.approx(19.05)
    assert stats["min_ms"] == 1.0 and stats["max_ms"] == 20.0 and stats["samples"] == 20
    assert summarize([7.0])["p95_ms"] == 7.0
    with pytest.raises(ValueError):
        summarize([])


def _run(label: str, backend: str, device: str, image: float, frame: dict, side: dict, precision: str = "fp32",
         size: int = 1024, model: str = "ovsam-rn50x16") -> dict:
    stages = {"image_part": {"p50_ms": image, "p95_ms": image}}
    for n, value in frame.items():
        stages[f"frame_{n}"] = {"p50_ms": value, "p95_ms": value}
    for n, value in side.items():
        stages[f"prompt_side_{n}"] = {"p50_ms": value, "p95_ms": value}
        stages[f"decode_{n}"] = {"p50_ms": value / 2, "p95_ms": value / 2}
    return {"model": model, "label": label, "image_size": size, "repeats": 3, "stages": stages,
            "variant": {"backend": backend, "device": device, "precision": precision, "compile_image": None},
            "memory": {"peak_mb": 1.0, "increase_mb": 0.5}}


def test_targets_and_ratios_from_known_figures() -> None:
    results = {
        "machine": {"cpu": "test", "cpu_cores": 2, "torch": "x", "torch_threads": 1, "load_average": [0.1, 0.1, 0.1]},
        "options": {"prompt_counts": [1, 10, 50], "frame_size": [480, 640], "vocabulary_size": 10, "synonyms": 1},
        "runs": [
            _run("torch fp32 @ cpu", "torch", "cpu", 1000.0, {1: 1010.0, 10: 1100.0}, {1: 10.0, 50: 300.0}),
            _run("onnxruntime fp32 @ cpu", "onnxruntime", "cpu", 500.0, {1: 520.0, 10: 600.0}, {1: 20.0, 50: 60.0}),
            _run("tensorrt fp16 @ cuda", "tensorrt", "cuda", 10.0, {10: 25.0}, {}, precision="fp16"),
        ],
        "baselines": [{"kind": "vit_h", "device": "cpu", "repeats": 1, "description": "b",
                       "stages": {"frame_1": {"p50_ms": 4000.0, "p95_ms": 4000.0},
                                  "frame_10": {"p50_ms": 3000.0, "p95_ms": 3000.0}},
                       "memory": {"peak_mb": 1.0, "increase_mb": 0.5}}],
    }
    ratios = ratios_to_baseline(results)
    assert [r["ours_over_baseline"]["10"] for r in ratios] == [1100.0 / 3000.0, 600.0 / 3000.0]
    assert all(r["paper_comparison"] for r in ratios)
    targets = evaluate_targets(results)

    def verdict(name: str, scope_part: str) -> tuple[float, bool]:
        target = next(t for t in targets if t["target"] == name and scope_part in t["scope"])
        return target["value"], target["met"]

    assert verdict("prompt on an encoded frame / full frame", "torch fp32") == (10.0 / 1010.0, True)
    assert verdict("50 prompts in one batch / 1 prompt", "torch fp32") == (30.0, False)
    assert verdict("50 prompts in one batch / 1 prompt", "onnxruntime") == (3.0, True)
    assert verdict("ours / SAM+CLIP baseline, 10 prompts, same device", "torch") == (1100.0 / 3000.0, False)
    assert verdict("ours / SAM+CLIP baseline, 10 prompts, same device", "onnxruntime") == (0.2, True)
    assert verdict("onnxruntime speed-up over torch eager, image part, CPU", "ovsam-rn50x16") == (2.0, True)
    assert verdict("frames/s, full-size model, 10 prompts, fp16 GPU", "tensorrt") == (40.0, True)
    results.update(ratios_to_baseline=ratios, targets=targets)
    report = format_report(results)
    assert "| ovsam-rn50x16 | onnxruntime fp32 @ cpu | vit_h | 0.130 | 0.200 | nan |" in report
    assert "| 50 prompts in one batch / 1 prompt | ovsam-rn50x16 / torch fp32 @ cpu | 30 | <= 5 | MISSED |" in report
