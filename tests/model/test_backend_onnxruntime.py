"""The onnxruntime backend against PyTorch on the tiny configuration: exported graphs, real runs.

Parity is bounded (max difference relative to the output's magnitude) and the predictor built on
either backend names every prompt the same way.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ovsam_model.backends import create_backend
from ovsam_model.backends.base import LAYOUT_BOX, LAYOUT_POINTS, LAYOUT_POINTS_BOX, prompt_arrays
from ovsam_model.backends.onnx_export import MANIFEST, OnnxExportError, ensure_onnx, read_export, weights_fingerprint
from ovsam_model.backends.onnxruntime_backend import OnnxRuntimeBackend
from ovsam_model.modeling.ovsam import OVSAM, build_model
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.vocabulary import Vocabulary, encode_class_names

RELATIVE_TOLERANCE = 1e-4
SIZE = 128  # ovsam-tiny's input


def randomized_tiny_model(seed: int = 0) -> OVSAM:
    """ovsam-tiny with its zero-initialised position tables randomised, so every path carries signal."""
    torch.manual_seed(seed)
    model = build_model("ovsam-tiny")
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if "rel_pos" in name or name.endswith("pos_embed"):
                tensor.normal_(0.0, 0.05)
    return model


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = float(expected.abs().max())
    assert scale > 0, "a zero output would make the comparison meaningless"
    return float((actual.float() - expected.float()).abs().max()) / scale


@pytest.fixture(scope="module")
def model() -> OVSAM:
    return randomized_tiny_model()


@pytest.fixture(scope="module")
def backend(model: OVSAM, tmp_path_factory) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, onnx_dir=tmp_path_factory.mktemp("onnx") / "tiny")


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def torch_features(model: OVSAM, pixels: torch.Tensor):
    with torch.no_grad():
        return model.encode_image(pixels)


def test_image_part_matches_torch(backend: OnnxRuntimeBackend, torch_features, pixels: torch.Tensor) -> None:
    features = backend.encode_image(pixels)
    assert relative_difference(features.embedding, torch_features.embedding) < RELATIVE_TOLERANCE
    assert len(features.fpn) == 4
    for got, want in zip(features.fpn, torch_features.fpn):
        assert got.shape == want.shape
        assert relative_difference(got, want) < RELATIVE_TOLERANCE
    assert relative_difference(features.clip_last, torch_features.clip_last) < RELATIVE_TOLERANCE


def _random_prompts(count: int, points_per_prompt: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(count, points_per_prompt, 2, generator=generator) * SIZE
    labels = (torch.rand(count, points_per_prompt, generator=generator) > 0.3).long()
    corners = torch.rand(count, 2, generator=generator) * SIZE * 0.6
    boxes = torch.cat([corners, corners + 8 + torch.rand(count, 2, generator=generator) * SIZE * 0.4], dim=1)
    return points, labels, boxes


@pytest.mark.parametrize("count", [1, 7, 50])
@pytest.mark.parametrize("layout", [LAYOUT_POINTS, LAYOUT_BOX, LAYOUT_POINTS_BOX])
def test_prompt_part_matches_torch_for_any_number_of_prompts(model, backend, torch_features, layout, count) -> None:
    points, labels, boxes = _random_prompts(count, 3, seed=count)
    args = {LAYOUT_POINTS: (points, labels, None), LAYOUT_BOX: (None, None, boxes),
            LAYOUT_POINTS_BOX: (points, labels, boxes)}[layout]
    with torch.no_grad():
        expected = model.decode(torch_features, *args)
    actual = backend.decode(torch_features, *args)
    assert actual.mask_logits.shape == expected.mask_logits.shape == (count, 1, SIZE // 4, SIZE // 4)
    assert relative_difference(actual.mask_logits, expected.mask_logits) < RELATIVE_TOLERANCE
    assert relative_difference(actual.region_embedding, expected.region_embedding) < RELATIVE_TOLERANCE
    # Boxes come from thresholded masks: equal unless a logit sits within float noise of zero.
    near_zero = (expected.mask_logits.abs() < 1e-4).flatten(1).any(dim=1)
    assert torch.equal(actual.mask_boxes[~near_zero], expected.mask_boxes[~near_zero])
    assert (expected.mask_boxes.sum(dim=1) > 0).any(), "random weights should give some non-empty masks"


def test_points_without_labels_are_foreground(model, backend, torch_features) -> None:
    points = torch.tensor([[[40.0, 50.0]], [[90.0, 20.0]]])
    with torch.no_grad():
        expected = model.decode(torch_features, points, torch.ones(2, 1), None)
    actual = backend.decode(torch_features, points)
    assert relative_difference(actual.mask_logits, expected.mask_logits) < RELATIVE_TOLERANCE


def test_prompt_layout_selection_and_errors() -> None:
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0]])
    assert prompt_arrays(None, None, boxes).layout == LAYOUT_BOX
    assert prompt_arrays(torch.zeros(1, 2, 2), None, None).layout == LAYOUT_POINTS
    assert prompt_arrays(torch.zeros(1, 2, 2), None, boxes).layout == LAYOUT_POINTS_BOX
    assert prompt_arrays(torch.zeros(1, 0, 2), None, boxes).layout == LAYOUT_BOX
    with pytest.raises(ValueError, match="point prompts, box prompts"):
        prompt_arrays(None, None, None)
    with pytest.raises(ValueError, match=r"points must be \[N, P, 2\]"):
        prompt_arrays(torch.zeros(2, 2), None, None)
    with pytest.raises(ValueError, match="point_labels must be"):
        prompt_arrays(torch.zeros(1, 2, 2), torch.ones(1, 3), None)
    with pytest.raises(ValueError, match="one box per point set"):
        prompt_arrays(torch.zeros(2, 1, 2), None, boxes)


def test_decode_rejects_a_batch_of_images(backend, torch_features) -> None:
    from ovsam_model.modeling.ovsam import ImageFeatures

    doubled = ImageFeatures(embedding=torch_features.embedding.repeat(2, 1, 1, 1),
                            fpn=tuple(level.repeat(2, 1, 1, 1) for level in torch_features.fpn),
                            clip_last=torch_features.clip_last.repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match="one image's features"):
        backend.decode(doubled, torch.zeros(1, 1, 2))


def test_predictor_on_onnxruntime_gives_the_same_masks_and_labels(model, backend) -> None:
    names = ["red circle", "blue square", "green star", "yellow hexagon", "white cross"]
    with torch.no_grad():
        vocabulary = Vocabulary(names, encode_class_names(model.encode_text, names, progress=False), source="test")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 60, size=(90, 150, 3), dtype=np.uint8)
    image[10:60, 20:70] = (220, 30, 30)
    image[40:85, 90:140] = (30, 40, 220)
    prompts = [PromptSpec("click", points=[[45.0, 35.0]]),
               PromptSpec("clicks", points=[[45.0, 35.0], [110.0, 60.0]], point_labels=[1, 0]),
               PromptSpec("box", box=[90.0, 40.0, 140.0, 85.0]),
               PromptSpec("box+click", points=[[115.0, 62.0]], box=[88.0, 38.0, 142.0, 88.0])]
    results = {}
    for name, chosen in (("torch", create_backend(model, "torch")), ("onnxruntime", backend)):
        predictor = OVSAMPredictor(model, vocabulary, backend=chosen)
        predictor.set_image(image)
        results[name] = predictor.predict(prompts, top_k=3)
    for ours, theirs in zip(results["onnxruntime"], results["torch"]):
        assert ours.prompt_id == theirs.prompt_id
        assert ours.label == theirs.label and ours.top_labels == theirs.top_labels
        assert abs(ours.score - theirs.score) < 1e-4
        disagreement = np.logical_xor(ours.mask, theirs.mask).sum()
        assert disagreement <= max(2, 0.001 * ours.mask.size)


def test_export_is_cached_by_weights(model: OVSAM, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "cache"))
    first = ensure_onnx(model)
    # Exporting must not leave any shared module in training mode (BatchNorm would then use batch
    # statistics and overwrite its running ones).
    assert not any(module.training for module in model.modules())
    assert first.directory.parent == tmp_path / "cache" / "onnx"
    assert first.directory.name.startswith("ovsam-tiny-")
    manifest = json.loads((first.directory / MANIFEST).read_text())
    assert manifest["fingerprint"] == weights_fingerprint(model)
    assert set(manifest["sha256"]) == {"image.onnx", "prompt_points.onnx", "prompt_box.onnx", "prompt_points_box.onnx"}
    stamp = first.image.stat().st_mtime_ns
    again = ensure_onnx(model)
    assert again.directory == first.directory and again.image.stat().st_mtime_ns == stamp  # not exported twice

    other = randomized_tiny_model(seed=1)
    assert weights_fingerprint(other) != weights_fingerprint(model)
    assert ensure_onnx(other).directory != first.directory


def test_incomplete_export_is_reported_and_redone(model: OVSAM, tmp_path) -> None:
    target = tmp_path / "export"
    files = ensure_onnx(model, target)
    (files.directory / "prompt_box.onnx").unlink()
    with pytest.raises(OnnxExportError, match="incomplete ONNX export"):
        read_export(target)
    with pytest.raises(OnnxExportError, match="incomplete"):
        OnnxRuntimeBackend(model, onnx_dir=target, export=False)
    assert ensure_onnx(model, target).prompt(LAYOUT_BOX).is_file()
    with pytest.raises(OnnxExportError, match="no ONNX export"):
        read_export(tmp_path / "nothing-here")


def test_onnxruntime_keeps_fp32_when_asked_for_half_precision(model, backend, caplog) -> None:
    with caplog.at_level("WARNING"):
        half = OnnxRuntimeBackend(model, "fp16", onnx_dir=backend.files.directory)
    assert half.precision == "fp32"
    assert "fp32 graphs" in caplog.text


def test_from_pretrained_and_the_node_factory_select_onnxruntime(model: OVSAM, tmp_path, monkeypatch) -> None:
    from ovsam_model.checkpoint import save_official_layout

    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "weights"
    save_official_layout(model, weights)
    predictor = OVSAMPredictor.from_pretrained("ovsam-tiny", weights, device="cpu", vocabulary=["a", "b"],
                                               backend="onnxruntime")
    assert predictor.backend.name == "onnxruntime"
    predictor.set_image(np.full((64, 64, 3), 100, np.uint8))
    assert len(predictor.predict([PromptSpec("p", points=[[20.0, 20.0]])])) == 1

    node_wiring = pytest.importorskip("ovsam_ros.node_wiring", reason="the node's factory needs rclpy")
    from ovsam_ros.settings import NodeSettings

    settings = NodeSettings(model="ovsam-tiny", weights_dir=str(weights), device="cpu", backend="onnxruntime",
                            vocabulary="", feature_cache_size=2)
    from_node = node_wiring.default_predictor_factory(settings)
    assert from_node.backend.name == "onnxruntime"
