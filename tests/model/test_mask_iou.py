"""The one mask IoU rule (ovsam_model/mask_iou.py), on hand-built masks whose IoU is counted here."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_model.mask_iou import mask_iou, mask_pair_iou


def test_pair_iou_counts_pixels_and_agrees_with_the_batched_rule() -> None:
    target = np.zeros((10, 12), bool)
    target[2:6, 3:9] = True  # 24 pixels
    predicted = np.zeros_like(target)
    predicted[4:8, 3:9] = True  # 24 pixels, 12 shared: 12 / 36
    assert mask_pair_iou(predicted, target) == pytest.approx(1 / 3)
    assert mask_pair_iou(target, target) == 1.0
    assert mask_pair_iou(np.zeros_like(target), target) == 0.0
    assert mask_iou(predicted[None], target[None])[0] == mask_pair_iou(predicted, target)


def test_two_empty_masks_agree_fully() -> None:
    # An empty answer to an empty target (or two backends both finding nothing) is agreement.
    empty = np.zeros((5, 5), bool)
    assert mask_pair_iou(empty, empty) == 1.0
