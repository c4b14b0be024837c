"""The batched-encoder benchmark times what it says: one encoder pass for all cameras' frames against
one pass per frame, on fresh (uncached) frames every repeat."""
from __future__ import annotations

import pytest
import torch

from ovsam_model.benchmark.batched_encode import bench_batched_encode, main
from ovsam_model.modeling.ovsam import build_model
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.vocabulary import Vocabulary


def test_the_batch_is_one_encoder_pass_and_single_frames_one_each(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model("ovsam-tiny")
    predictor = OVSAMPredictor(model, Vocabulary(["a"], torch.randn(1, 1, model.config.text_dim), source="test"))
    batch_sizes: list[int] = []
    encode = predictor.backend.encode_image
    monkeypatch.setattr(predictor.backend, "encode_image",
                        lambda pixels: batch_sizes.append(pixels.shape[0]) or encode(pixels))
    result = bench_batched_encode(predictor, cameras=3, repeats=2, warmup=1)
    # 3 repeats (1 warm-up), each: one pass of 3 frames and three passes of 1, nothing served from the cache.
    assert sorted(batch_sizes) == sorted([3, 1, 1, 1] * 3)
    assert result["batched_ms"]["samples"] == result["one_at_a_time_ms"]["samples"] == 2
    assert result["ratio_batched_to_one_at_a_time"] == pytest.approx(
        result["batched_ms"]["p50_ms"] / result["one_at_a_time_ms"]["p50_ms"])
    with pytest.raises(ValueError, match="at least 2"):
        bench_batched_encode(predictor, cameras=1)


def test_the_command_prints_the_ratio_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "encode.json"
    assert main(["--model", "ovsam-shapes", "--repeats", "1", "--threads", "1", "--json", str(out)]) == 0
    assert "ratio batch / one at a time" in capsys.readouterr().out
    assert '"ratio_batched_to_one_at_a_time"' in out.read_text()
