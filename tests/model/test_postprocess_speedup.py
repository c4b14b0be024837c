"""The windowed mask postprocessing gives the reference's masks, scores and boxes.

The reference is what the predictor did before: `OVSAM.postprocess_masks` over the whole frame,
`mask_scores`, logits > 0, and a tight box per mask (`full_frame_masks`). The contract: boxes
identical, scores within 1e-5 (float summation order), masks identical except where the
reference logit is within 1e-4 of 0 (the windows are computed with torch's own interpolation,
so in practice they are identical).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovsam_model.mask_box import tight_box
from ovsam_model.mask_postprocess import (
    FrameMask,
    LinearAxis,
    exact_prefix,
    frame_masks,
    full_frame_masks,
    windowed_frame_masks,
)
from ovsam_model.modeling.ovsam import OVSAM

LOGIT_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-5


class Geometry:
    """The part of OVSAM that postprocessing reads (the input size and OVSAM's own resize and
    postprocess_masks), without building a network for every input size."""

    def __init__(self, image_size: int) -> None:
        self.config = type("Config", (), {"image_size": image_size})()

    resized_shape = OVSAM.resized_shape
    postprocess_masks = OVSAM.postprocess_masks


FRAME_SIZES = [(480, 640), (640, 480), (720, 1280), (48, 64), (101, 77), (255, 257), (7, 300), (1, 5)]


def random_logits(count: int, size: int, seed: int, offset: float) -> torch.Tensor:
    """Smooth random logits: noise at a quarter of the resolution, upsampled, shifted down by
    `offset` so that larger offsets give fewer, smaller blobs."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(count, 1, max(size // 4, 2), max(size // 4, 2), generator=generator) * 4
    return F.interpolate(coarse, (size, size), mode="bilinear", align_corners=False) - offset


def structured_logits(size: int) -> torch.Tensor:
    """Edge cases: empty, foreground only in the padding (bottom rows and right columns for
    landscape and portrait frames), touching each border, one pixel, everything foreground."""
    masks = torch.full((9, 1, size, size), -3.0)
    masks[1, 0, -2:, :] = 5.0  # bottom rows: padding for landscape frames
    masks[2, 0, :, -2:] = 5.0  # right columns: padding for portrait frames
    masks[3, 0, :, :1] = 5.0  # left border
    masks[4, 0, :1, :] = 5.0  # top border
    masks[5, 0, size // 2, size // 2] = 8.0  # one pixel
    masks[6, 0, size // 4:size // 2, size // 3:size // 2] = 2.0  # a rectangle
    masks[7] = 4.0  # everything
    masks[8, 0, ::7, ::5] = 1.0  # scattered dots: a window over the whole frame
    return masks


def assert_same(model: Geometry, low: torch.Tensor, frame_hw: tuple[int, int], got: list[FrameMask]) -> None:
    reference = full_frame_masks(model, low, frame_hw)
    logits = model.postprocess_masks(low.float(), frame_hw)[:, 0].numpy()
    assert len(got) == len(reference)
    for index, (expected, actual) in enumerate(zip(reference, got)):
        where = f"mask {index}, frame {frame_hw}, S={model.config.image_size}"
        assert actual.mask.shape == frame_hw and actual.mask.dtype == bool, where
        flipped = expected.mask != actual.mask
        assert np.all(np.abs(logits[index][flipped]) < LOGIT_TOLERANCE), f"{where}: {int(flipped.sum())} pixels differ"
        assert actual.box == expected.box, where
        assert actual.box == tight_box(actual.mask), where
        assert abs(actual.score - expected.score) <= SCORE_TOLERANCE, f"{where}: {actual.score} vs {expected.score}"


@pytest.mark.parametrize("image_size", [256, 64])
@pytest.mark.parametrize("frame_hw", FRAME_SIZES, ids=[f"{w}x{h}" for h, w in FRAME_SIZES])
def test_windowed_masks_match_the_reference(image_size: int, frame_hw: tuple[int, int]) -> None:
    model = Geometry(image_size)
    low_size = image_size // 4
    for seed, offset in enumerate([0.0, 4.0, 8.0]):
        low = random_logits(6, low_size, seed, offset)
        assert_same(model, low, frame_hw, frame_masks(model, low, frame_hw))
    low = structured_logits(low_size)
    assert_same(model, low, frame_hw, frame_masks(model, low, frame_hw))


def test_full_size_model_geometry_matches_the_reference() -> None:
    """1024 input, 256x256 logits (ovsam-rn50x16), on a camera frame."""
    model = Geometry(1024)
    low = torch.cat([random_logits(3, 256, 7, 6.0), structured_logits(256)])
    assert_same(model, low, (480, 640), frame_masks(model, low, (480, 640)))


def test_half_precision_logits_are_upsampled_in_float() -> None:
    model = Geometry(256)
    low = random_logits(4, 64, 3, 4.0).to(torch.bfloat16)
    assert_same(model, low, (480, 640), frame_masks(model, low, (480, 640)))


def test_empty_and_padding_only_masks_are_empty() -> None:
    model = Geometry(256)
    low = structured_logits(64)[:3]  # empty, bottom padding rows, right padding columns
    landscape = windowed_frame_masks(low, 256, model.resized_shape(480, 640), (480, 640))
    for frame in landscape[:2]:
        assert frame.box is None and frame.score == 0.0 and not frame.mask.any()
    portrait = windowed_frame_masks(low, 256, model.resized_shape(640, 480), (640, 480))
    assert portrait[2].box is None and not portrait[2].mask.any()


def test_masks_touching_the_borders_reach_them() -> None:
    model = Geometry(256)
    frames = frame_masks(model, structured_logits(64), (480, 640))
    assert frames[3].box[0] == 0 and frames[3].box[1] == 0 and frames[3].box[3] == 480  # left border, full height
    assert frames[4].box[:3] == (0, 0, 640)  # top border, full width
    assert frames[7].box == (0, 0, 640, 480) and frames[7].mask.all()


def test_no_prompts_give_no_masks() -> None:
    assert frame_masks(Geometry(256), torch.zeros(0, 1, 64, 64), (480, 640)) == []


@pytest.mark.parametrize("source, output, used", [(64, 256, 192), (192, 480, None), (256, 48, None), (37, 101, None)])
def test_linear_axis_has_torchs_taps(source: int, output: int, used: int | None) -> None:
    """Each output reads first and first + 1 (or the last source twice), non-decreasing, where
    align_corners=False puts them: src = (dst + 0.5) * source / output - 0.5, clamped at 0."""
    axis = LinearAxis.of(source, output, used)
    assert axis.size == (used or output)
    positions = np.maximum((np.arange(axis.size) + 0.5) * source / output - 0.5, 0)
    assert np.all(np.abs(axis.first - np.minimum(np.floor(positions), source - 1)) <= 1)
    assert np.all(np.diff(axis.first) >= 0) and np.all(np.diff(axis.last) >= 0)
    assert np.all((axis.last == axis.first + 1) | (axis.last == source - 1))
    # Every output outside outputs_reading(a, b) reads no source in [a, b].
    low, high = source // 3, source // 2
    start, stop = axis.outputs_reading(low, high)
    outside = np.r_[0:start, stop:axis.size]
    assert not np.any((axis.last[outside] >= low) & (axis.first[outside] <= high))
    assert np.all((axis.last[start:stop] >= low) & (axis.first[start:stop] <= high))


@pytest.mark.parametrize("source, output, needed", [(64, 256, 192), (192, 480, 100), (256, 1024, 768), (256, 640, 300),
                                                    (48, 640, 10), (256, 48, 20), (37, 101, 50), (255, 257, 3)])
def test_exact_prefix_samples_like_the_whole_resize(source: int, output: int, needed: int) -> None:
    """A wrong sampling position would move values by a sizeable fraction of their spread."""
    sources, outputs = exact_prefix(source, output, needed)
    assert needed <= outputs <= output and sources <= source
    assert sources * output == outputs * source  # the same ratio, so the same float scale
    row = torch.randn(1, 1, 2, source, generator=torch.Generator().manual_seed(source))
    whole = F.interpolate(row, (2, output), mode="bilinear", align_corners=False)[..., :needed]
    prefix = F.interpolate(row[..., :sources], (2, outputs), mode="bilinear", align_corners=False)[..., :needed]
    assert torch.allclose(prefix, whole, rtol=0, atol=1e-5)
