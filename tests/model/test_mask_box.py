"""`ovsam_model.mask_box`: the one tight-box rule and the innermost pixel, checked on hand-built masks."""
from __future__ import annotations

import numpy as np

from ovsam_model.mask_box import innermost_pixel, masks_to_boxes, tight_box


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


def test_innermost_pixel_is_the_pixel_farthest_from_the_background() -> None:
    mask = np.zeros((20, 30), bool)
    mask[4:9, 10:25] = True    # a 5-row bar: its middle row is row 6
    mask[4:17, 10:13] = True   # and a thin leg down from its left end
    x, y = innermost_pixel(mask)
    assert y == 6 and 12 <= x <= 22  # on the bar's middle row, away from its ends (ties go to the first)
    assert innermost_pixel(mask, tight_box(mask)) == (x, y)  # the window changes nothing but the work
    assert innermost_pixel(np.zeros((4, 4), bool)) is None
