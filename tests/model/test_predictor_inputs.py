"""Image normalisation (as_rgb_uint8) and prompt validation (PromptSpec.validate): no model needed."""
import numpy as np
import pytest

from ovsam_model.image_input import ImageError, as_rgb_uint8
from ovsam_model.prompts import MAX_POINTS_PER_PROMPT, PromptError, PromptSpec

# ---------------------------------------------------------------------------- images


def test_rgb_uint8_passes_through_unchanged() -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = as_rgb_uint8(image)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("shape", [(6, 4), (6, 4, 1)])
def test_grey_is_replicated_to_three_channels(shape) -> None:
    grey = np.arange(24, dtype=np.uint8).reshape(shape)
    out = as_rgb_uint8(grey)
    assert out.shape == (6, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey.reshape(6, 4))


def test_rgba_drops_alpha() -> None:
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    out = as_rgb_uint8(rgba)
    assert out.shape == (3, 3, 3)
    assert out[1, 1].tolist() == [10, 20, 30]


def test_uint16_grey_is_scaled_to_full_8_bit_range() -> None:
    depth_like = np.array([[0, 257], [32896, 65535]], dtype=np.uint16)
    out = as_rgb_uint8(depth_like)
    assert out[..., 0].tolist() == [[0, 1], [128, 255]]


def test_float_in_unit_range_is_scaled() -> None:
    image = np.full((2, 3, 3), 0.5, dtype=np.float32)
    assert as_rgb_uint8(image)[0, 0].tolist() == [128, 128, 128]


def test_float_above_one_is_scaled_by_its_maximum() -> None:
    thermal = np.array([[0.0, 100.0], [200.0, 400.0]], dtype=np.float32)
    assert as_rgb_uint8(thermal)[..., 0].tolist() == [[0, 64], [128, 255]]


def test_non_contiguous_input_gives_contiguous_output() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)[:, ::2]
    assert as_rgb_uint8(image).flags.c_contiguous


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 5, 3), dtype=np.uint8), "empty"),
        (np.zeros((5,), dtype=np.uint8), "HxW"),
        (np.zeros((1, 1, 3), dtype=np.uint8), "at least 2x2"),
        (np.zeros((1, 9), dtype=np.uint8), "at least 2x2"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "channels"),
        (np.zeros((4, 4, 3), dtype=np.int32), "unsupported pixel type"),
        (np.zeros((4, 4, 3), dtype=bool), "unsupported pixel type"),
        (np.full((4, 4), np.nan, dtype=np.float32), "NaN"),
        (np.full((4, 4), -0.5, dtype=np.float64), "negative"),
    ],
)
def test_bad_images_raise_image_error(image, message) -> None:
    with pytest.raises(ImageError, match=message):
        as_rgb_uint8(image)


def test_non_array_is_refused() -> None:
    with pytest.raises(ImageError, match="numpy array"):
        as_rgb_uint8([[1, 2], [3, 4]])


def test_smallest_accepted_image_is_2x2() -> None:
    assert as_rgb_uint8(np.zeros((2, 2), dtype=np.uint8)).shape == (2, 2, 3)


# ---------------------------------------------------------------------------- prompts


def test_prompt_converts_inputs_to_arrays() -> None:
    prompt = PromptSpec("p", points=[[1, 2], [3, 4]], point_labels=[1, 0], box=[0, 0, 5, 5])
    assert prompt.points.dtype == np.float64 and prompt.points.shape == (2, 2)
    assert prompt.point_labels.dtype == np.int64
    assert prompt.box.shape == (4,)
    assert PromptSpec("q", box=[0, 0, 1, 1]).points.shape == (0, 2)
    assert prompt.num_points == 2 and prompt.has_box


def test_empty_labels_mean_all_foreground() -> None:
    prompt = PromptSpec("p", points=[[1, 2], [3, 4]])
    prompt.validate(10, 10)
    assert prompt.labels_or_default().tolist() == [1, 1]


@pytest.mark.parametrize(
    "prompt, message",
    [
        (PromptSpec("none"), "neither points nor a box"),
        (PromptSpec("nan", points=[[np.nan, 2.0]]), "NaN"),
        (PromptSpec("inf", box=[0, 0, np.inf, 5]), "NaN or infinite"),
        (PromptSpec("left", points=[[-0.6, 2.0]]), "outside"),
        (PromptSpec("below", points=[[3.0, 10.6]]), "outside"),
        (PromptSpec("boxout", box=[0, 0, 21, 5]), "outside"),
        (PromptSpec("inverted", box=[8, 2, 3, 6]), "x1 > x0"),
        (PromptSpec("flat", box=[2, 4, 8, 4]), "x1 > x0"),
        (PromptSpec("count", points=[[1, 1], [2, 2]], point_labels=[1]), "1 point labels for 2 points"),
        (PromptSpec("label", points=[[1, 1]], point_labels=[2]), "1 \\(foreground\\) or 0"),
        (PromptSpec("fraction", points=[[1, 1]], point_labels=[0.5]), "1 \\(foreground\\) or 0"),
        (PromptSpec("bg", points=[[1, 1], [2, 2]], point_labels=[0, 0]), "only background"),
        (PromptSpec("many", points=np.ones((MAX_POINTS_PER_PROMPT + 1, 2))), "at most 64"),
        (PromptSpec("shape", points=[1.0, 2.0, 3.0]), r"\(P, 2\)"),
        (PromptSpec("boxshape", box=[1, 2, 3]), "4 numbers"),
    ],
)
def test_invalid_prompts_raise_prompt_error_naming_the_id(prompt, message) -> None:
    with pytest.raises(PromptError, match=message) as caught:
        prompt.validate(image_height=10, image_width=20)
    assert repr(prompt.prompt_id) in str(caught.value)


def test_half_pixel_margin_is_allowed() -> None:
    PromptSpec("edge", points=[[-0.5, 10.5]], box=[-0.5, -0.5, 20.5, 10.5]).validate(10, 20)


def test_background_points_with_a_box_are_allowed() -> None:
    PromptSpec("refine", points=[[3, 3]], point_labels=[0], box=[0, 0, 10, 10]).validate(10, 20)
