"""TensorRT: the engine cache and the fallback run everywhere; building and running engines needs
TensorRT and an NVIDIA GPU, so those tests skip (with the reason) on CI, which has neither."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ovsam_model.backends import BackendUnavailableError, create_backend
from ovsam_model.backends.engine_cache import EngineCache, EngineKey, gpu_driver_version
from ovsam_model.modeling.ovsam import build_model

REPO_ROOT = Path(__file__).resolve().parents[2]


def a_key(**changes) -> EngineKey:
    key = EngineKey(graph="image", onnx_sha256="ab" * 32, gpu_name="NVIDIA GeForce RTX 4090",
                    compute_capability="8.9", tensorrt_version="10.3.0", cuda_version="12.8",
                    driver_version="570.86.15", precision="fp16",
                    profile=json.dumps({"pixels": [[1, 3, 1024, 1024]] * 3}))
    return replace(key, **changes)


def test_engine_key_names_everything_an_engine_depends_on() -> None:
    key = a_key()
    stem = key.file_stem()
    assert stem.startswith("image-nvidia-geforce-rtx-4090-sm89-trt10.3.0-fp16-")
    variants = [a_key(onnx_sha256="cd" * 32), a_key(gpu_name="NVIDIA A100"), a_key(compute_capability="8.0"),
                a_key(tensorrt_version="10.4.0"), a_key(precision="fp32"), a_key(profile="{}"),
                a_key(graph="prompt_box"),
                a_key(cuda_version="13.0"), a_key(driver_version="580.65.06")]
    stems = {variant.file_stem() for variant in variants}
    assert stem not in stems and len(stems) == len(variants)


def test_driver_version_is_read_from_the_kernel_module(tmp_path) -> None:
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.86.15  Thu Jan 23 2025\n"
                    "GCC version:  gcc version 12.2.0\n")
    assert gpu_driver_version(proc) == "570.86.15"
    proc.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build\n")
    assert gpu_driver_version(proc) == "580.65.06"
    # Without the file (Jetson, containers): libcuda's API version, or "unknown" without a driver.
    assert gpu_driver_version(tmp_path / "missing").startswith(("cuda-", "unknown"))


def test_cache_builds_once_then_loads(tmp_path) -> None:
    cache = EngineCache(tmp_path / "engines")
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b"serialized-engine-bytes"

    engine, built = cache.get_or_build(a_key(), build)
    assert (engine, built) == (b"serialized-engine-bytes", True)
    engine, built = cache.get_or_build(a_key(), build)
    assert (engine, built) == (b"serialized-engine-bytes", False)
    assert len(builds) == 1
    sidecar = json.loads(cache.engine_path(a_key()).with_suffix(".json").read_text())
    assert sidecar["gpu_name"] == "NVIDIA GeForce RTX 4090" and sidecar["tensorrt_version"] == "10.3.0"
    # A TensorRT upgrade (or any other key change) means a new build, never the old engine.
    _, built = cache.get_or_build(a_key(tensorrt_version="10.4.0"), build)
    assert built and len(builds) == 2
    assert not list((tmp_path / "engines").glob(".*"))  # no temporary files left behind


def test_cache_refuses_an_engine_whose_sidecar_disagrees(tmp_path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(a_key(), b"engine")
    sidecar = cache.engine_path(a_key()).with_suffix(".json")
    recorded = json.loads(sidecar.read_text())
    recorded["tensorrt_version"] = "8.6.1"
    sidecar.write_text(json.dumps(recorded))
    assert cache.load(a_key()) is None
    cache.discard(a_key())
    assert not cache.engine_path(a_key()).exists() and not sidecar.exists()


def test_tensorrt_code_is_not_imported_unless_selected() -> None:
    code = ("import sys, torch; from ovsam_model.modeling.ovsam import build_model; "
            "from ovsam_model.backends import create_backend; "
            "from ovsam_model.predictor import OVSAMPredictor; OVSAMPredictor(build_model('ovsam-tiny')); "
            "print(sorted(m for m in sys.modules if 'tensorrt' in m))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cache_root_follows_ovsam_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "root"))
    assert EngineCache().root == tmp_path / "root" / "tensorrt"


def _tensorrt_usable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(_tensorrt_usable(), reason="TensorRT and a GPU are present: there is nothing to fall back from")
def test_without_tensorrt_or_a_gpu_the_backend_falls_back_with_the_reason(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = build_model("ovsam-tiny")
    with pytest.raises(BackendUnavailableError) as refused:
        create_backend(model, "tensorrt", "fp16", fallback=False)
    assert "tensorrt" in str(refused.value).lower()
    with caplog.at_level("WARNING"):
        backend = create_backend(model, "tensorrt", "fp16")
    assert backend.name == "onnxruntime"  # on a CPU machine the exported graphs are the next best
    assert backend.fallback_reason == str(refused.value)
    assert "Falling back to the onnxruntime backend" in caplog.text
    with torch.no_grad():
        pixels = torch.randn(1, 3, 128, 128)
        assert torch.allclose(backend.encode_image(pixels).embedding, model.encode_image(pixels).embedding, atol=1e-4)


@pytest.fixture
def tensorrt_ready():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (CI has no GPU); run on a machine with one")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs an NVIDIA GPU; this torch sees none")


@pytest.mark.slow
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("fp16", 5e-2)])
def test_tensorrt_engines_match_torch_and_are_reused(tensorrt_ready, tmp_path, precision, tolerance) -> None:
    from ovsam_model.backends.tensorrt_backend import TensorRTBackend

    torch.manual_seed(0)
    model = build_model("ovsam-tiny", device="cuda")
    backend = TensorRTBackend(model, precision, onnx_dir=tmp_path / "onnx", cache_dir=tmp_path / "engines")
    pixels = torch.randn(1, 3, 128, 128, device="cuda")
    points = torch.rand(70, 2, 2, device="cuda") * 128  # more than one engine batch (64)
    boxes = torch.tensor([[10.0, 12.0, 90.0, 100.0]] * 70, device="cuda")
    with torch.no_grad():
        expected = model.encode_image(pixels)
        features = backend.encode_image(pixels)
        scale = float(expected.embedding.abs().max())
        assert float((features.embedding - expected.embedding).abs().max()) / scale < tolerance
        for args in ((points, None, None), (None, None, boxes), (points, torch.ones(70, 2), boxes)):
            want = model.decode(expected, *args)
            got = backend.decode(expected, *args)
            assert got.mask_logits.shape == want.mask_logits.shape
            logit_scale = float(want.mask_logits.abs().max())
            assert float((got.mask_logits - want.mask_logits).abs().max()) / logit_scale < tolerance
    assert "image" in backend.engines_built
    again = TensorRTBackend(model, precision, onnx_dir=tmp_path / "onnx", cache_dir=tmp_path / "engines")
    assert again.engines_built == []  # the image engine came from the cache
    assert len(list((tmp_path / "engines").glob("image-*.engine"))) == 1
