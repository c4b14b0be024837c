"""`ovsam-model triton-repo`: the repository's layout and configurations, and the client's failures
without a server. (The server itself: tests/node/test_triton_server.py.)"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from ovsam_model.backends.triton_backend import InferenceServerError, TritonBackend, normalise_url
from ovsam_model.cli import main
from ovsam_model.config import get_config
from ovsam_model.modeling.ovsam import build_model
from ovsam_model.triton.health_probe import ServerHealthProbe
from ovsam_model.triton.local_server import free_port
from ovsam_model.triton.names import IMAGE_MODEL, all_models, prompt_inputs, prompt_model
from ovsam_model.triton.repository import RepositoryOptions, feature_shapes, write_repository


def tensors(config_text: str, kind: str) -> dict[str, list[int]]:
    """{name: dims} of a config.pbtxt's input or output block."""
    block = re.search(kind + r" \[\n(.*?)\n\]", config_text, re.S)
    assert block is not None
    return {name: [int(v) for v in dims.split(",")]
            for name, dims in re.findall(r'name: "(\w+)" data_type: TYPE_FP32 dims: \[ ([-\d, ]+) \]', block.group(1))}


def test_python_repository_has_every_model_with_its_config(tmp_path: Path) -> None:
    out = write_repository("ovsam-shapes", tmp_path / "repo")
    assert sorted(p.name for p in out.iterdir()) == sorted(all_models())
    image = (out / IMAGE_MODEL / "config.pbtxt").read_text()
    assert 'backend: "python"' in image and "max_batch_size: 8" in image and "dynamic_batching" in image
    assert tensors(image, "input") == {"pixels": [3, 256, 256]}
    for layout in ("points", "box", "points_box"):
        text = (out / prompt_model(layout) / "config.pbtxt").read_text()
        assert "max_batch_size: 0" in text and "dynamic_batching" not in text
        assert list(tensors(text, "input")) == list(prompt_inputs(layout))
        assert f'key: "role" value: {{ string_value: "{layout}" }}' in text
        assert "from ovsam_model.triton.python_model import TritonPythonModel" in (
            out / prompt_model(layout) / "1" / "model.py").read_text()


def test_batching_and_instances_are_options(tmp_path: Path) -> None:
    options = RepositoryOptions(dynamic_batching=False, max_batch_size=4, instances=2)
    out = write_repository("ovsam-shapes", tmp_path / "repo", options=options)
    image = (out / IMAGE_MODEL / "config.pbtxt").read_text()
    assert "dynamic_batching" not in image and "max_batch_size: 4" in image and "count: 2" in image


def test_config_shapes_are_the_models_feature_shapes() -> None:
    model = build_model("ovsam-shapes")
    size = model.config.image_size
    with torch.no_grad():
        features = model.encode_image(torch.zeros(1, 3, size, size))
    actual = {"embedding": features.embedding, **{f"fpn{i}": level for i, level in enumerate(features.fpn)},
              "clip_last": features.clip_last}
    assert {name: tuple(t.shape[1:]) for name, t in actual.items()} == feature_shapes(model.config)


@pytest.mark.slow
def test_onnx_repository_matches_the_exported_graphs(tmp_path: Path) -> None:
    import onnx

    out = write_repository("ovsam-shapes", tmp_path / "repo", options=RepositoryOptions(backend="onnx"))
    for name in all_models():
        text = (out / name / "config.pbtxt").read_text()
        assert 'platform: "onnxruntime_onnx"' in text
        graph = onnx.load(str(out / name / "1" / "model.onnx")).graph
        for kind, values in (("input", graph.input), ("output", graph.output)):
            declared = tensors(text, kind)
            assert [v.name for v in values] == list(declared)
            for value in values:
                assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # = TYPE_FP32
                ranks = len(value.type.tensor_type.shape.dim) - (1 if name == IMAGE_MODEL else 0)
                assert ranks == len(declared[value.name]), (name, value.name)


def test_cli_writes_a_repository_and_rejects_bad_options(tmp_path: Path, capsys) -> None:
    assert main(["triton-repo", "--out", str(tmp_path / "repo")]) == 0
    assert "ovsam_image" in capsys.readouterr().out
    assert main(["triton-repo", "--out", str(tmp_path / "bad"), "--max-batch", "0"]) == 2


def test_an_unreachable_server_fails_with_the_reason() -> None:
    model = build_model("ovsam-shapes")
    address = f"localhost:{free_port()}"  # nothing listens there
    backend = TritonBackend(model, f"http://{address}/", timeout_s=5.0)
    assert backend.url == address == normalise_url(f"http://{address}/")
    size = get_config("ovsam-shapes").image_size
    with pytest.raises(InferenceServerError, match=f"inference server {address} is unreachable"):
        backend.encode_image(torch.zeros(1, 3, size, size))
    assert backend.status.state == "unreachable" and backend.status.failures == 1
    assert not backend.check_ready()
    probe = ServerHealthProbe(address, timeout_s=1.0)
    assert probe.probe_once()["server_state"] == "unreachable"


def test_a_server_that_does_not_answer_times_out_with_the_reason() -> None:
    import socket

    model = build_model("ovsam-shapes")
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        backend = TritonBackend(model, address, timeout_s=1.0)
        size = get_config("ovsam-shapes").image_size
        with pytest.raises(InferenceServerError,
                           match=f"inference server {address} did not answer ovsam_image within 1 s"):
            backend.encode_image(torch.zeros(1, 3, size, size))
    assert backend.status.state == "timed out"


def test_triton_serve_reports_a_server_that_cannot_start(tmp_path: Path, capsys) -> None:
    assert main(["triton-serve", "--repo", str(tmp_path / "missing"), "--http-port", str(free_port()),
                 "--ready-timeout", "120"]) == 1
    assert "exited" in capsys.readouterr().err
