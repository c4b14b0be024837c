"""The label images (instance ids, semantic) of one frame: exactly the instances' masks, overlaps to
the higher score (then the lower index), unknown classes 0 in the semantic image."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_model.instances import InstancePrediction
from ovsam_ros.label_images import instance_id_image, mask_in_box, semantic_image

HEIGHT, WIDTH = 12, 16


def instance(box: tuple[int, int, int, int], score: float, class_index: int = 0) -> InstancePrediction:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return InstancePrediction(prompt_id="", mask=mask, mask_score=0.9, box=box, class_index=class_index,
                              label=f"class-{class_index}", score=score)


def test_an_empty_frame_is_all_zeros():
    ids = instance_id_image([], HEIGHT, WIDTH)
    assert ids.dtype == np.uint16 and ids.shape == (HEIGHT, WIDTH) and not ids.any()
    semantic = semantic_image(ids, [])
    assert semantic.dtype == np.uint16 and semantic.shape == (HEIGHT, WIDTH) and not semantic.any()


def test_each_pixel_holds_one_plus_the_index_of_its_instance():
    first, second = instance((0, 0, 4, 3), 0.5), instance((10, 6, 16, 12), 0.7)
    ids = instance_id_image([first, second], HEIGHT, WIDTH)
    expected = np.zeros((HEIGHT, WIDTH), np.uint16)
    expected[first.mask] = 1
    expected[second.mask] = 2
    assert np.array_equal(ids, expected)


@pytest.mark.parametrize("scores", [(0.3, 0.9), (0.9, 0.3)])
def test_the_higher_score_owns_an_overlap_whatever_the_order(scores):
    low_first = [instance((0, 0, 10, 10), scores[0], class_index=4), instance((5, 5, 15, 12), scores[1], class_index=7)]
    ids = instance_id_image(low_first, HEIGHT, WIDTH)
    winner = 1 if scores[0] > scores[1] else 2
    overlap = low_first[0].mask & low_first[1].mask
    assert overlap.any() and set(np.unique(ids[overlap])) == {winner}
    only_first, only_second = low_first[0].mask & ~overlap, low_first[1].mask & ~overlap
    assert set(np.unique(ids[only_first])) == {1} and set(np.unique(ids[only_second])) == {2}
    assert not ids[~(low_first[0].mask | low_first[1].mask)].any()
    semantic = semantic_image(ids, [p.class_index for p in low_first])
    assert set(np.unique(semantic[overlap])) == {(4 if winner == 1 else 7) + 1}


def test_equal_scores_leave_an_overlap_to_the_earlier_instance():
    ids = instance_id_image([instance((0, 0, 8, 8), 0.5), instance((4, 4, 12, 12), 0.5)], HEIGHT, WIDTH)
    assert ids[5, 5] == 1 and ids[10, 10] == 2


def test_a_mask_inside_its_box_is_painted_exactly():
    ring = instance((2, 2, 9, 9), 0.6)
    ring.mask[4:7, 4:7] = False  # a hole: the box is not the mask
    ids = instance_id_image([ring], HEIGHT, WIDTH)
    assert np.array_equal(ids == 1, ring.mask)
    x0, y0, crop = mask_in_box(ring)
    assert (x0, y0, crop.shape) == (2, 2, (7, 7)) and np.array_equal(crop, ring.mask[2:9, 2:9])


def test_semantic_is_one_plus_the_class_and_zero_for_an_unknown_class():
    known, unknown = instance((0, 0, 5, 5), 0.8, class_index=0), instance((8, 0, 12, 4), 0.8, class_index=-1)
    large = instance((0, 8, 4, 12), 0.8, class_index=70000)  # beyond mono16
    ids = instance_id_image([known, unknown, large], HEIGHT, WIDTH)
    semantic = semantic_image(ids, [known.class_index, unknown.class_index, large.class_index])
    assert np.array_equal(semantic == 1, known.mask)
    assert not semantic[unknown.mask].any() and set(np.unique(ids[unknown.mask])) == {2}
    assert not semantic[large.mask].any() and set(np.unique(ids[large.mask])) == {3}
    assert set(np.unique(semantic)) == {0, 1}
