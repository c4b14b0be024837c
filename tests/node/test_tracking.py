"""`Tracker`: a track is lost after `lost_after` frames in a row without a good mask (none, or one
scoring under the threshold), and a good mask in between starts the count again."""
from __future__ import annotations

import numpy as np

from ovsam_ros.tracking import MIN_MASK_SCORE, Tracker


def test_a_track_is_lost_after_lost_after_misses_in_a_row() -> None:
    tracker = Tracker(lost_after=3)
    track = tracker.start("mug", (10, 10, 30, 30))
    assert tracker.update(track, None, 0.0) and tracker.update(track, None, 0.0)
    assert tracker.update(track, (12, 10, 32, 30), 0.95)  # found again: the count starts over
    assert tracker.update(track, None, 0.0) and tracker.update(track, None, 0.0)
    assert not tracker.update(track, None, 0.0)
    assert len(tracker) == 0 and tracker.prompts(100, 100) == []
    assert not tracker.update(track, (12, 10, 32, 30), 0.95)  # a lost track stays lost


def test_a_weak_mask_is_a_miss_and_keeps_the_last_good_box() -> None:
    # Any non-empty mask scores above 0.5 (the mean foreground probability): the threshold must lie above.
    assert 0.5 < MIN_MASK_SCORE < 0.87
    tracker = Tracker(lost_after=2)
    track = tracker.start("mug", (10, 10, 30, 30))
    assert tracker.update(track, (50, 50, 90, 90), 0.6)  # a mask, but a weak one
    (_, prompt), = tracker.prompts(100, 100)
    assert prompt.box[0] < 10 < 30 < prompt.box[2]  # still prompted around the last good box
    assert not tracker.update(track, (50, 50, 90, 90), 0.6)  # the second weak mask in a row loses it


def test_track_ids_are_never_reused() -> None:
    tracker = Tracker(lost_after=1)
    first = tracker.start("a", (0, 0, 5, 5))
    assert not tracker.update(first, None, 0.0)
    assert tracker.start("b", (0, 0, 5, 5)) == first + 1


def test_each_prompt_clicks_the_last_good_masks_innermost_pixel_inside_its_grown_box() -> None:
    tracker = Tracker(lost_after=3, box_growth=0.25)
    track = tracker.start("mug", (10, 20, 30, 60), (18, 41))
    (_, prompt), = tracker.prompts(100, 100)
    np.testing.assert_array_equal(prompt.box, [5, 10, 35, 70])
    np.testing.assert_array_equal(prompt.points, [[18, 41]])
    np.testing.assert_array_equal(prompt.point_labels, [1])
    assert tracker.update(track, (12, 20, 32, 60), 0.95, (21, 40))
    (_, prompt), = tracker.prompts(100, 100)
    np.testing.assert_array_equal(prompt.points, [[21, 40]])
    assert tracker.update(track, (60, 60, 90, 90), 0.6, (70, 70))  # a weak mask moves nothing
    (_, prompt), = tracker.prompts(100, 100)
    np.testing.assert_array_equal(prompt.points, [[21, 40]])
    assert prompt.box[0] < 12 and prompt.box[2] > 32
    bare = Tracker()
    bare.start("cup", (10, 10, 20, 20))  # without a point: the box alone
    (_, prompt), = bare.prompts(100, 100)
    assert prompt.points.shape == (0, 2)
