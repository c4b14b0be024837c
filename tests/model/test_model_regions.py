"""Recognition plumbing: mask boxes, mmdet's level rule, multi-level RoIAlign, FPN top-down path."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ovsam_model.modeling.fpn import FPN
from ovsam_model.modeling.region_pooling import box_levels, mask_logits_to_boxes, pool_regions


def test_mask_boxes_follow_mask2bbox_and_scale() -> None:
    logits = torch.full((3, 1, 16, 16), -1.0)
    logits[0, 0, 2:5, 3:9] = 1.0  # rows 2..4, columns 3..8
    logits[1, 0, 7, 0] = 0.5  # a single pixel
    # logits[2] stays empty
    boxes = mask_logits_to_boxes(logits, scale=4)
    assert boxes.tolist() == [[12.0, 8.0, 36.0, 20.0], [0.0, 28.0, 4.0, 32.0], [0.0, 0.0, 0.0, 0.0]]


def test_threshold_is_logit_zero() -> None:
    logits = torch.zeros(1, 1, 4, 4)  # sigmoid exactly 0.5 is not foreground
    logits[0, 0, 1, 1] = 1e-3
    assert mask_logits_to_boxes(logits).tolist() == [[1.0, 1.0, 2.0, 2.0]]


@pytest.mark.parametrize(
    "side, level", [(10.0, 0), (111.0, 0), (112.0, 1), (224.0, 2), (448.0, 3), (1000.0, 3), (0.0, 0)]
)
def test_level_rule_of_single_roi_extractor(side: float, level: int) -> None:
    boxes = torch.tensor([[5.0, 5.0, 5.0 + side, 5.0 + side]])
    assert box_levels(boxes, finest_scale=56, num_levels=4).item() == level


def test_each_box_is_pooled_from_its_level_with_aligned_roi_align() -> None:
    torch.manual_seed(0)
    strides = (4, 8, 16, 32)
    pyramid = [torch.randn(1, 6, 256 // s, 256 // s) for s in strides]
    boxes = torch.tensor([[10.0, 12.0, 60.0, 50.0], [0.0, 0.0, 250.0, 256.0], [40.0, 30.0, 170.0, 160.0]])
    pooled = pool_regions(pyramid, strides, boxes, output_size=7, finest_scale=56)
    assert pooled.shape == (3, 6, 7, 7)
    for index, level in enumerate(box_levels(boxes, 56, 4).tolist()):
        rois = torch.cat([torch.zeros(1, 1), boxes[index : index + 1]], dim=1)
        expected = roi_align(pyramid[level], rois, (7, 7), spatial_scale=1 / strides[level], sampling_ratio=0,
                             aligned=True)
        assert torch.allclose(pooled[index], expected[0])
    assert box_levels(boxes, 56, 4).tolist() == [0, 2, 1]


def test_empty_box_pools_zeros() -> None:
    pyramid = [torch.ones(1, 2, 8, 8) for _ in range(4)]
    pooled = pool_regions(pyramid, (4, 8, 16, 32), torch.zeros(1, 4), output_size=3, finest_scale=56)
    assert torch.equal(pooled, torch.zeros(1, 2, 3, 3))


def test_fpn_top_down_nearest_sum() -> None:
    torch.manual_seed(0)
    fpn = FPN([3, 4, 5, 6], 2)
    levels = [torch.randn(1, c, s, s) for c, s in zip([3, 4, 5, 6], [16, 8, 4, 2])]
    outputs = fpn(levels)
    laterals = [conv(level) for conv, level in zip(fpn.lateral_convs, levels)]
    merged = laterals[3]
    expected = [None, None, None, fpn.fpn_convs[3](merged)]
    for index in (2, 1, 0):
        merged = laterals[index] + F.interpolate(merged, scale_factor=2, mode="nearest")
        expected[index] = fpn.fpn_convs[index](merged)
    assert [tuple(o.shape) for o in outputs] == [(1, 2, 16, 16), (1, 2, 8, 8), (1, 2, 4, 4), (1, 2, 2, 2)]
    for got, want in zip(outputs, expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_fpn_from_a_coarser_level_gives_the_whole_pyramids_coarser_outputs() -> None:
    torch.manual_seed(0)
    fpn = FPN([3, 4, 5, 6], 2)
    levels = [torch.randn(2, c, s, s) for c, s in zip([3, 4, 5, 6], [16, 8, 4, 2])]
    whole = fpn(levels)
    for first in (1, 2, 3):
        partial = fpn(levels[first:], first=first)
        assert len(partial) == 4 - first
        for got, want in zip(partial, whole[first:]):
            assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="from level 2"):
        fpn(levels, first=2)


def test_boxes_of_a_batch_are_pooled_from_their_own_image() -> None:
    torch.manual_seed(0)
    strides = (4, 8, 16, 32)
    pyramid = [torch.randn(3, 6, 256 // s, 256 // s) for s in strides]
    boxes = torch.tensor([[10.0, 12.0, 60.0, 50.0], [0.0, 0.0, 250.0, 256.0], [40.0, 30.0, 170.0, 160.0]])
    image_index = torch.tensor([2, 0, 1])
    pooled = pool_regions(pyramid, strides, boxes, output_size=7, finest_scale=56, image_index=image_index)
    for index, image in enumerate(image_index.tolist()):
        one = pool_regions([level[image : image + 1] for level in pyramid], strides, boxes[index : index + 1],
                           output_size=7, finest_scale=56)
        assert torch.allclose(pooled[index], one[0])
    # The images differ, so pooling from the wrong one would show.
    wrong = pool_regions(pyramid, strides, boxes, output_size=7, finest_scale=56)
    assert not torch.allclose(pooled[0], wrong[0])


def test_a_box_mapping_to_an_absent_level_is_an_error() -> None:
    pyramid = [None, None, None, torch.ones(1, 2, 8, 8)]
    big = torch.tensor([[0.0, 0.0, 200.0, 200.0]])
    assert pool_regions(pyramid, (4, 8, 16, 32), big, output_size=3, finest_scale=4).shape == (1, 2, 3, 3)
    with pytest.raises(ValueError, match="level 1, which was not given"):
        pool_regions(pyramid, (4, 8, 16, 32), torch.tensor([[0.0, 0.0, 10.0, 10.0]]), output_size=3, finest_scale=4)
