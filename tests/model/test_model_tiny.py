"""Real forward passes of the tiny configuration: prompts in, masks, boxes and class logits out."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovsam_model import OVSAM, DecoderOutput, ImageFeatures, build_model, get_config


@pytest.fixture(scope="module")
def model() -> OVSAM:
    torch.manual_seed(0)
    return build_model("ovsam-tiny")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 60, size=(96, 120, 3), dtype=np.uint8)
    picture[20:70, 30:90] = (200, 40, 40)
    return picture


@pytest.fixture(scope="module")
def features(model: OVSAM, image: np.ndarray) -> ImageFeatures:
    pixels, _ = model.preprocess(image)
    with torch.no_grad():
        return model.encode_image(pixels)


def test_preprocess_resizes_long_side_normalises_and_pads_bottom_right(model: OVSAM, image: np.ndarray) -> None:
    pixels, scale = model.preprocess(image)
    size = model.config.image_size
    assert pixels.shape == (1, 3, size, size)
    assert scale == pytest.approx(size / 120)
    new_h = int(96 * scale)  # truncated, as resized_shape does
    assert (pixels[..., new_h:, :] == 0).all()
    # A pixel inside the red square, normalised with SAM's statistics.
    red = ((torch.tensor([200.0, 40.0, 40.0]) - torch.tensor(model.config.pixel_mean))
           / torch.tensor(model.config.pixel_std))
    centre = pixels[0, :, int(45 * scale), int(60 * scale)]
    assert torch.allclose(centre, red, atol=1e-4)


def test_preprocess_rejects_non_rgb_input(model: OVSAM) -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        model.preprocess(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        model.preprocess(np.zeros((10, 10, 3), dtype=np.float32))


def test_encode_image_shapes(model: OVSAM, features: ImageFeatures) -> None:
    config = model.config
    size = config.image_size
    assert features.embedding.shape == (1, config.prompt_embed_dim, size // 16, size // 16)
    assert [tuple(level.shape) for level in features.fpn] == [
        (1, config.fpn_channels, size // stride, size // stride) for stride in config.backbone_strides
    ]
    assert features.clip_last.shape == (1, config.backbone_channels[-1], size // 32, size // 32)


def _check_output(model: OVSAM, output: DecoderOutput, count: int) -> None:
    low_res = model.config.image_size // 4
    assert isinstance(output, DecoderOutput)
    assert output.mask_logits.shape == (count, 1, low_res, low_res)
    assert output.region_embedding.shape == (count, model.config.text_dim)
    assert output.mask_boxes.shape == (count, 4)
    assert torch.isfinite(output.mask_logits).all() and torch.isfinite(output.region_embedding).all()


def test_decode_positive_points(model: OVSAM, features: ImageFeatures) -> None:
    points = torch.tensor([[[40.0, 50.0]], [[90.0, 20.0]], [[10.0, 100.0]]])
    with torch.no_grad():
        output = model.decode(features, points=points, point_labels=torch.ones(3, 1))
    _check_output(model, output, 3)


def test_negative_point_changes_the_prediction(model: OVSAM, features: ImageFeatures) -> None:
    points = torch.tensor([[[40.0, 50.0], [70.0, 60.0]]] * 2)
    labels = torch.tensor([[1, 1], [1, 0]])
    with torch.no_grad():
        output = model.decode(features, points=points, point_labels=labels)
    _check_output(model, output, 2)
    assert not torch.allclose(output.mask_logits[0], output.mask_logits[1])


def test_decode_boxes_and_points_with_box(model: OVSAM, features: ImageFeatures) -> None:
    boxes = torch.tensor([[20.0, 20.0, 100.0, 90.0], [0.0, 0.0, 50.0, 50.0]])
    points = torch.tensor([[[60.0, 55.0]], [[25.0, 25.0]]])
    with torch.no_grad():
        box_only = model.decode(features, boxes=boxes)
        combined = model.decode(features, points=points, point_labels=torch.ones(2, 1), boxes=boxes)
    _check_output(model, box_only, 2)
    _check_output(model, combined, 2)
    assert not torch.allclose(box_only.mask_logits, combined.mask_logits)


def test_prompt_token_layout_follows_sam(model: OVSAM) -> None:
    dim = model.config.prompt_embed_dim
    points = torch.tensor([[[10.0, 10.0], [20.0, 30.0]]])
    box = torch.tensor([[5.0, 5.0, 40.0, 40.0]])
    sparse, dense = model.encode_prompts(points, torch.ones(1, 2), None)
    assert sparse.shape == (1, 3, dim)  # a padding point is appended when there is no box
    assert torch.allclose(sparse[0, 2], model.prompt_encoder.not_a_point_embed.weight[0])
    assert model.encode_prompts(None, None, box)[0].shape == (1, 2, dim)  # two corner tokens
    assert model.encode_prompts(points, torch.ones(1, 2), box)[0].shape == (1, 4, dim)
    grid = model.config.image_size // 16
    assert dense.shape == (1, dim, grid, grid)
    assert torch.allclose(dense[0, :, 0, 0], model.prompt_encoder.no_mask_embed.weight[0])


def test_decode_validates_prompts(model: OVSAM, features: ImageFeatures) -> None:
    with pytest.raises(ValueError, match="point prompts, box prompts"):
        model.decode(features)
    with pytest.raises(ValueError, match=r"\[N, P, 2\]"):
        model.decode(features, points=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="one box per point set"):
        model.decode(features, points=torch.zeros(2, 1, 2), boxes=torch.zeros(3, 4))


def test_decode_is_deterministic_and_batch_independent(model: OVSAM, features: ImageFeatures) -> None:
    boxes = torch.tensor([[20.0, 20.0, 100.0, 90.0], [0.0, 0.0, 50.0, 50.0]])
    with torch.no_grad():
        first = model.decode(features, boxes=boxes)
        second = model.decode(features, boxes=boxes)
        alone = model.decode(features, boxes=boxes[1:])
    assert torch.equal(first.mask_logits, second.mask_logits)
    assert torch.equal(first.region_embedding, second.region_embedding)
    assert torch.allclose(first.mask_logits[1:], alone.mask_logits, atol=1e-5)
    assert torch.allclose(first.region_embedding[1:], alone.region_embedding, atol=1e-5)


def test_decode_on_a_batch_of_images_matches_each_image_alone(model: OVSAM, image: np.ndarray) -> None:
    # Two different images in one batch, prompts of both interleaved: each prompt's mask, box and
    # region embedding are those of decoding it on its own image.
    other = np.ascontiguousarray(image[::-1, ::-1])
    pixels = torch.cat([model.preprocess(image)[0], model.preprocess(other)[0]])
    boxes = torch.tensor([[20.0, 20.0, 100.0, 90.0], [0.0, 0.0, 50.0, 50.0], [30.0, 40.0, 110.0, 110.0]])
    image_index = torch.tensor([1, 0, 1])
    with torch.no_grad():
        batch = model.encode_image(pixels)
        together = model.decode(batch, boxes=boxes, image_index=image_index)
        alone = [model.decode(batch.select(int(i)), boxes=boxes[k:k + 1]) for k, i in enumerate(image_index)]
    _check_output(model, together, 3)
    for k, single in enumerate(alone):
        assert torch.allclose(together.mask_logits[k], single.mask_logits[0], atol=1e-5)
        assert torch.equal(together.mask_boxes[k], single.mask_boxes[0])
        assert torch.allclose(together.region_embedding[k], single.region_embedding[0], atol=1e-5)
    # The images differ, so which image a prompt is on matters.
    assert not torch.allclose(together.mask_logits[0], alone[1].mask_logits[0])


def test_decode_on_a_batch_needs_a_valid_image_per_prompt(model: OVSAM, image: np.ndarray) -> None:
    pixels = model.preprocess(image)[0].repeat(2, 1, 1, 1)
    boxes = torch.tensor([[20.0, 20.0, 100.0, 90.0], [0.0, 0.0, 50.0, 50.0]])
    with torch.no_grad():
        batch = model.encode_image(pixels)
    with pytest.raises(ValueError, match="one image's features"):
        model.decode(batch, boxes=boxes)
    with pytest.raises(ValueError, match="one image per prompt"):
        model.decode(batch, boxes=boxes, image_index=torch.tensor([0]))
    with pytest.raises(ValueError, match=r"in 0\.\.1"):
        model.decode(batch, boxes=boxes, image_index=torch.tensor([0, 2]))


def test_same_seed_builds_the_same_model() -> None:
    torch.manual_seed(3)
    first = build_model("ovsam-tiny").state_dict()
    torch.manual_seed(3)
    second = build_model("ovsam-tiny").state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_mask_boxes_are_the_boxes_of_the_predicted_masks(model: OVSAM, features: ImageFeatures) -> None:
    with torch.no_grad():
        output = model.decode(features, boxes=torch.tensor([[20.0, 20.0, 100.0, 90.0]]))
    foreground = output.mask_logits[0, 0] > 0
    if foreground.any():
        ys, xs = torch.nonzero(foreground, as_tuple=True)
        expected = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32) * 4
    else:
        expected = torch.zeros(4)
    assert torch.equal(output.mask_boxes[0], expected)


def test_classify_cosine_times_scale_max_over_synonyms_with_background(model: OVSAM) -> None:
    dim = model.config.text_dim
    torch.manual_seed(1)
    regions = torch.randn(3, dim)
    text = F.normalize(torch.randn(5, 2, dim), dim=-1)
    logits = model.classify(regions, text)
    assert logits.shape == (3, 6)
    expected = (F.normalize(regions, dim=-1) @ text.reshape(10, dim).T).reshape(3, 5, 2).amax(-1)
    assert torch.allclose(logits[:, :5], expected * math.exp(model.config.logit_scale), atol=1e-4)
    assert torch.equal(logits[:, 5], torch.zeros(3))
    # Chunking over classes gives the same logits as one pass.
    assert torch.allclose(model.classify(regions, text, chunk_size=2), logits, atol=1e-4)
    # A (K, D) vocabulary means one synonym per class.
    assert torch.allclose(model.classify(regions, text[:, 0]), model.classify(regions, text[:, :1]))


def test_region_embedding_names_the_region(model: OVSAM, features: ImageFeatures) -> None:
    with torch.no_grad():
        output = model.decode(features, boxes=torch.tensor([[20.0, 20.0, 100.0, 90.0]]))
    vocabulary = torch.stack([F.normalize(torch.randn(model.config.text_dim), dim=0),
                              F.normalize(output.region_embedding[0], dim=0)])
    logits = model.classify(output.region_embedding, vocabulary[:, None, :])
    assert logits[0, :2].argmax() == 1
    assert logits[0, 1] == pytest.approx(math.exp(model.config.logit_scale), rel=1e-4)


def test_clip_branch_mixes_the_two_distributions(model: OVSAM, features: ImageFeatures) -> None:
    dim = model.config.text_dim
    torch.manual_seed(2)
    text = F.normalize(torch.randn(4, 1, dim), dim=-1)
    boxes = torch.tensor([[20.0, 20.0, 100.0, 90.0]])
    with torch.no_grad():
        output = model.decode(features, boxes=boxes)
        # Force a non-empty mask so the CLIP branch takes part.
        output.mask_logits = torch.full_like(output.mask_logits, 5.0)
        output.mask_boxes = boxes.clone()
        head = model.classify(output.region_embedding, text).log_softmax(-1)
        only_head = model.classify_with_clip_branch(features, output, text, alpha=0.0, beta=0.0)
        only_clip = model.classify_with_clip_branch(features, output, text, alpha=1.0, beta=1.0)
        base = torch.tensor([True, False, True, False])
        mixed = model.classify_with_clip_branch(features, output, text, base_classes=base, alpha=0.1, beta=0.9)
    assert torch.allclose(only_head, head, atol=1e-5)
    assert not torch.allclose(only_clip, head, atol=1e-3)
    weight = torch.tensor([0.1, 0.9, 0.1, 0.9, 0.1])
    assert torch.allclose(mixed, (1 - weight) * head + weight * only_clip, atol=1e-5)


def test_postprocess_masks_returns_original_resolution(model: OVSAM, features: ImageFeatures) -> None:
    with torch.no_grad():
        output = model.decode(features, boxes=torch.tensor([[20.0, 20.0, 100.0, 90.0]]))
    full = model.postprocess_masks(output.mask_logits, (96, 120))
    assert full.shape == (1, 1, 96, 120)


def test_encode_text_uses_the_clip_text_tower(model: OVSAM) -> None:
    with torch.no_grad():
        embeddings = model.encode_text(["a red square", "a blue circle", "a red square"])
    assert embeddings.shape == (3, model.config.text_dim)
    assert torch.allclose(embeddings[0], embeddings[2])
    assert not torch.allclose(embeddings[0], embeddings[1])
    with pytest.raises(TypeError):
        model.encode_text("a red square")


def test_clip_stays_frozen_in_train_mode(model: OVSAM) -> None:
    model.train()
    try:
        assert not model.clip.training
        assert model.neck_student.training and model.mask_decoder.training
        assert not any(p.requires_grad for p in model.clip.parameters())
    finally:
        model.eval()


def test_configs_are_data() -> None:
    config = get_config("ovsam-tiny")
    assert get_config(config.name) == config
    smaller = config.replace(image_size=64)
    assert smaller.image_size == 64 and smaller.embedding_size == 4
    with pytest.raises(ValueError, match="multiple of 32"):
        config.replace(image_size=100)
    with pytest.raises(ValueError, match="available"):
        get_config("no-such-model")
