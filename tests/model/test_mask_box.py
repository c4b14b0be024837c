"""`ovsam_model.mask_box`: the one tight-box rule, checked on hand-built masks."""
from __future__ import annotations

import numpy as np

from ovsam_model.mask_box import masks_to_boxes, tight_box


def test_tight_box_has_exclusive_ends_and_none_for_an_empty_mask() -> None:
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    mask[7, 1] = True  # one stray pixel widens the box
    assert tight_box(mask) == (1, 2, 9, 8)
    assert tight_box(np.zeros((4, 4), bool)) is None
    single = np.zeros((4, 4), bool)
    single[3, 0] = True
    assert tight_box(single) == (0, 3, 1, 4)


def test_masks_to_boxes_gives_zeros_for_empty_masks_as_mmdets_mask2bbox() -> None:
    masks = np.zeros((3, 6, 6), bool)
    masks[0, 1:3, 2:6] = True
    masks[2] = True
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, [[2, 1, 6, 3], [0, 0, 0, 0], [0, 0, 6, 6]])
