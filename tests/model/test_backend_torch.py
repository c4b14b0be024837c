"""The torch backend's options on the tiny configuration: plain fp32 is OVSAM itself; channels-last,
bf16 autocast and the stage-by-stage image part give the same features; GPU-only options skip here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ovsam_model.backends import create_backend
from ovsam_model.backends.torch_backend import TorchBackend
from ovsam_model.modeling.ovsam import OVSAM, build_model

SIZE = 128


@pytest.fixture
def model() -> OVSAM:
    torch.manual_seed(0)
    return build_model("ovsam-tiny")


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).abs().max()) / float(expected.abs().max())


def test_plain_fp32_backend_is_the_model_itself(model: OVSAM, pixels: torch.Tensor) -> None:
    backend = create_backend(model, "torch")
    assert isinstance(backend, TorchBackend) and backend.is_plain
    with torch.no_grad():
        expected = model.encode_image(pixels)
        features = backend.encode_image(pixels)
        points = torch.tensor([[[30.0, 40.0]], [[90.0, 70.0]]])
        want = model.decode(expected, points)
        got = backend.decode(features, points)
    assert torch.equal(features.embedding, expected.embedding)
    assert torch.equal(got.mask_logits, want.mask_logits)
    assert torch.equal(got.region_embedding, want.region_embedding)


def test_stage_by_stage_image_part_equals_encode_image(model: OVSAM, pixels: torch.Tensor) -> None:
    backend = TorchBackend(model)
    with torch.no_grad():
        expected = model.encode_image(pixels)
        levels = backend.backbone(pixels)
        embedding = backend.adapter(levels)
        pyramid = backend.fpn(levels)
    assert [level.shape[-1] for level in levels] == [SIZE // 4, SIZE // 8, SIZE // 16, SIZE // 32]
    assert torch.allclose(embedding, expected.embedding, atol=1e-6)
    for got, want in zip(pyramid, expected.fpn):
        assert torch.allclose(got, want, atol=1e-6)


def test_channels_last_gives_the_same_features(model: OVSAM, pixels: torch.Tensor) -> None:
    with torch.no_grad():
        expected = model.encode_image(pixels)
        backend = TorchBackend(model, channels_last=True)
        assert model.clip.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        features = backend.encode_image(pixels)
    assert not backend.is_plain
    assert relative_difference(features.embedding, expected.embedding) < 1e-5
    assert relative_difference(features.fpn[0], expected.fpn[0]) < 1e-5
    assert features.embedding.dtype == torch.float32


def test_bf16_autocast_stays_close_and_returns_fp32(model: OVSAM, pixels: torch.Tensor) -> None:
    with torch.no_grad():
        expected = model.encode_image(pixels)
        backend = TorchBackend(model, "bf16")
        features = backend.encode_image(pixels)
        points = torch.tensor([[[30.0, 40.0]], [[90.0, 70.0]], [[64.0, 64.0]]])
        want = model.decode(expected, points)
        got = backend.decode(features, points)
    for tensor in (features.embedding, *features.fpn, got.mask_logits, got.region_embedding, got.mask_boxes):
        assert tensor.dtype == torch.float32
    # bf16 keeps ~3 significant digits; through a dozen layers the features stay well correlated.
    correlation = np.corrcoef(features.embedding.flatten().numpy(), expected.embedding.flatten().numpy())[0, 1]
    assert correlation > 0.99
    mask_correlation = np.corrcoef(got.mask_logits.flatten().numpy(), want.mask_logits.flatten().numpy())[0, 1]
    assert mask_correlation > 0.98


def test_bad_options_are_refused(model: OVSAM, pixels: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="precision 'fp64'"):
        TorchBackend(model, "fp64")
    with pytest.raises(ValueError, match="compile_image"):
        TorchBackend(model, compile_image="fastest")
    with pytest.raises(ValueError, match=r"expected pixels \[B, 3, 128, 128\]"):
        TorchBackend(model).backbone(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown backend 'openvino'"):
        create_backend(model, "openvino")


def test_fp16_on_the_cpu_warns_that_it_is_slow(model: OVSAM, caplog) -> None:
    with caplog.at_level("WARNING"):
        TorchBackend(model, "fp16")
    assert "fp16 on the CPU is slow" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 and torch.compile/CUDA graphs are GPU options; "
                    "this machine has no CUDA GPU")
def test_gpu_fp16_channels_last_and_compiled_image_part_match_fp32(pixels: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = build_model("ovsam-tiny", device="cuda")
    with torch.no_grad():
        expected = model.encode_image(pixels.cuda())
        half = TorchBackend(model, "fp16", channels_last=True).encode_image(pixels.cuda())
        compiled = TorchBackend(model, "fp16", compile_image="reduce-overhead")
        for _ in range(3):  # CUDA graphs record on the first calls, then replay
            replayed = compiled.encode_image(pixels.cuda())
    for features in (half, replayed):
        assert features.embedding.dtype == torch.float32
        assert relative_difference(features.embedding, expected.embedding) < 0.05

