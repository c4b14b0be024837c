"""The README picture's colouring: 0 black, every other label value its own colour."""
from __future__ import annotations

import numpy as np

from ovsam_ros.tools.render_label_outputs import colour_labels, scene_with_boxes


def test_each_label_value_has_its_own_colour_and_zero_is_black():
    labels = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint16)
    coloured = colour_labels(labels)
    assert coloured.dtype == np.uint8 and coloured.shape == (2, 3, 3)
    assert not coloured[0, 0].any()
    colours = {tuple(coloured.reshape(-1, 3)[i]) for i in range(1, 6)}
    assert len(colours) == 5 and (0, 0, 0) not in colours


def test_the_scene_has_a_box_around_each_object():
    rgb, boxes = scene_with_boxes(seed=3, size=64)
    assert rgb.shape == (64, 64, 3) and len(boxes) >= 1
    assert all(0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64 for x0, y0, x1, y1 in boxes)
