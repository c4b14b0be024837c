"""`Tracker`, on hand-drawn masks: the invariants its module states. A track is lost after
`lost_after` frames in a row without a good mask; each frame it offers a click on the last good mask's
innermost pixel, alone and with that mask's grown box, carried on by the mask's velocity; a miss or a
weak mask moves nothing; a tracked answer is named by the track's vote among its own top classes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ovsam_model.instances import InstancePrediction
from ovsam_ros.tracking import MIN_MASK_SCORE, EmptyMaskError, Tracker, best_candidate, frame_classes

SECOND_NS = 1_000_000_000


def square(x0: int, y0: int, side: int = 20, size: int = 100) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return mask


def test_a_track_is_lost_after_lost_after_misses_in_a_row() -> None:
    tracker = Tracker(lost_after=3)
    track = tracker.start("mug", square(10, 10), 0)
    assert tracker.update(track, None, 0.0, 1) and tracker.update(track, None, 0.0, 2)
    assert tracker.update(track, square(12, 10), 0.95, 3)  # found again: the count starts over
    assert tracker.update(track, None, 0.0, 4) and tracker.update(track, None, 0.0, 5)
    assert not tracker.update(track, None, 0.0, 6)
    assert len(tracker) == 0 and tracker.prompts(7, 100, 100) == []
    assert not tracker.update(track, square(12, 10), 0.95, 7)  # a lost track stays lost


def test_a_weak_mask_is_a_miss_and_moves_nothing() -> None:
    # Any non-empty mask scores above 0.5 (the mean foreground probability): the threshold must lie above.
    assert 0.5 < MIN_MASK_SCORE < 0.87
    tracker = Tracker(lost_after=2)
    track = tracker.start("mug", square(10, 10), 0)
    (before,) = tracker.prompts(SECOND_NS, 100, 100)
    assert tracker.update(track, square(60, 60), 0.6, SECOND_NS // 2)  # a mask, but a weak one
    (after,) = tracker.prompts(SECOND_NS, 100, 100)
    for old, new in zip(before.candidates, after.candidates):
        np.testing.assert_array_equal(new.points, old.points)
        np.testing.assert_array_equal(new.box, old.box)
    assert not tracker.update(track, square(60, 60), 0.6, SECOND_NS)  # the second weak mask in a row loses it


def test_track_ids_are_never_reused_and_an_empty_mask_starts_nothing() -> None:
    tracker = Tracker(lost_after=1)
    first = tracker.start("a", square(0, 0, 5), 0)
    assert not tracker.update(first, None, 0.0, 1)
    assert tracker.start("b", square(0, 0, 5), 1) == first + 1
    with pytest.raises(EmptyMaskError):
        tracker.start("c", np.zeros((10, 10), bool), 1)
    assert len(tracker) == 1


def test_each_frame_offers_the_innermost_click_alone_and_with_the_grown_box() -> None:
    tracker = Tracker(box_growth=0.25)
    track = tracker.start("mug", square(10, 20), 0)  # pixels 10-29 x 20-39: box (10, 20, 30, 40)
    (prompts,) = tracker.prompts(0, 100, 100)
    assert prompts.track_id == track and prompts.prompt_id == "mug"
    click, boxed = prompts.candidates
    assert click.box is None
    for candidate in (click, boxed):
        assert candidate.prompt_id == "mug"
        np.testing.assert_array_equal(candidate.points, [[19, 29]])  # the first of the four innermost pixels
        np.testing.assert_array_equal(candidate.point_labels, [1])
    np.testing.assert_array_equal(boxed.box, [5, 15, 35, 45])


def test_the_click_and_box_move_on_with_the_masks_velocity() -> None:
    tracker = Tracker(box_growth=0.0)
    track = tracker.start("mug", square(10, 20), 0)
    assert tracker.update(track, square(14, 22), 0.95, SECOND_NS // 2)  # 8 px/s right, 4 px/s down
    (prompts,) = tracker.prompts(SECOND_NS, 100, 100)  # half a second on: 4 px right, 2 down
    click, boxed = prompts.candidates
    np.testing.assert_allclose(click.points, [[23 + 4, 31 + 2]])
    np.testing.assert_allclose(boxed.box, [14 + 4, 22 + 2, 34 + 4, 42 + 2])
    (later,) = tracker.prompts(SECOND_NS * 21 // 2, 100, 100)  # 80 px on: past the right edge, kept inside
    np.testing.assert_allclose(later.candidates[0].points, [[99, 31 + 40]])
    np.testing.assert_allclose(later.candidates[1].box, [94, 22 + 40, 100, 42 + 40])
    (gone,) = tracker.prompts(20 * SECOND_NS, 100, 100)  # the box wholly off the frame: the click alone
    assert len(gone.candidates) == 1 and gone.candidates[0].points[0, 0] == 99


def test_a_track_has_no_velocity_until_its_second_good_mask_nor_after_time_runs_backwards() -> None:
    tracker = Tracker(box_growth=0.0)
    track = tracker.start("mug", square(10, 20), SECOND_NS)
    (prompts,) = tracker.prompts(5 * SECOND_NS, 100, 100)
    np.testing.assert_array_equal(prompts.candidates[0].points, [[19, 29]])  # no velocity yet: where it was
    assert tracker.update(track, square(10, 20), 0.95, SECOND_NS)  # the same frame again: no velocity from it
    (prompts,) = tracker.prompts(5 * SECOND_NS, 100, 100)
    np.testing.assert_array_equal(prompts.candidates[0].points, [[19, 29]])
    assert tracker.update(track, square(14, 20), 0.95, 2 * SECOND_NS)  # 4 px/s
    # A bag replayed from its start: the clock runs back to 0 s. The track follows the object from
    # there, and a velocity from a negative time (or one carried back in time) would send it astray.
    assert tracker.update(track, square(40, 50), 0.95, 0)
    (prompts,) = tracker.prompts(SECOND_NS, 100, 100)
    np.testing.assert_array_equal(prompts.candidates[0].points, [[49, 59]])
    np.testing.assert_array_equal(prompts.candidates[1].box, [40, 50, 60, 70])
    assert tracker.update(track, square(42, 50), 0.95, SECOND_NS)  # and measures it again going forward
    (prompts,) = tracker.prompts(2 * SECOND_NS, 100, 100)
    np.testing.assert_array_equal(prompts.candidates[0].points, [[53, 59]])


def prediction(mask_score: float, box: tuple[int, int, int, int] | None,
               classes: tuple[tuple[int, str, float], ...] = ((0, "mug", 0.9),)) -> InstancePrediction:
    """A prediction named `classes` (index, name, probability), most probable first."""
    return InstancePrediction(prompt_id="mug", mask=np.zeros((4, 4), bool), mask_score=mask_score, box=box,
                              class_index=classes[0][0], label=classes[0][1], score=classes[0][2],
                              top_labels=[c[1] for c in classes], top_scores=[c[2] for c in classes],
                              top_indices=[c[0] for c in classes])


def test_the_answer_is_the_candidate_whose_mask_scores_highest() -> None:
    low, high, empty = prediction(0.8, (0, 0, 2, 2)), prediction(0.95, (0, 0, 3, 3)), prediction(0.99, None)
    assert best_candidate([low, high]) is high and best_candidate([high, low]) is high
    assert best_candidate([empty, low]) is low  # an empty mask is never the answer while a mask exists
    assert best_candidate([empty]) is empty


def test_a_tracked_answer_is_named_by_the_tracks_vote_among_its_own_top_classes() -> None:
    tracker = Tracker()
    first = prediction(0.95, (10, 10, 30, 30), ((3, "mug", 0.6), (5, "cup", 0.3)))
    track = tracker.start("mug", square(10, 10), 0, classes=frame_classes(first))
    doubtful = prediction(0.95, (11, 10, 31, 30), ((5, "cup", 0.55), (3, "mug", 0.4)))
    assert tracker.update(track, square(11, 10), 0.95, 1, classes=frame_classes(doubtful))
    named = tracker.named(track, doubtful)  # mug 0.6 + 0.4 against cup 0.3 + 0.55
    assert (named.label, named.class_index) == ("mug", 3) and named.score == pytest.approx(0.5)
    assert named.top_labels == ["cup", "mug"] and named.top_scores == [0.55, 0.4]  # the frame's own
    elsewhere = prediction(0.95, (12, 10, 32, 30), ((7, "bowl", 0.9), (5, "cup", 0.05)))
    assert tracker.update(track, square(12, 10), 0.95, 2, classes=frame_classes(elsewhere))
    # "mug" leads the vote but is not among this frame's classes: of those, "cup" has the most votes.
    assert tracker.named(track, elsewhere).label == "cup"


def test_a_miss_adds_no_votes_and_answers_without_classes_keep_their_name() -> None:
    tracker = Tracker()
    first = prediction(0.95, (10, 10, 30, 30), ((3, "mug", 0.6), (5, "cup", 0.3)))
    track = tracker.start("mug", square(10, 10), 0, classes=frame_classes(first))
    weak = prediction(0.6, (10, 10, 30, 30), ((5, "cup", 0.99), (3, "mug", 0.01)))
    assert tracker.update(track, square(10, 10), 0.6, 1, classes=frame_classes(weak))  # a miss
    assert tracker.named(track, weak).label == "mug"  # 0.6 + nothing against 0.3 + nothing
    unnamed = dataclasses.replace(weak, class_index=-1, label="", score=0.0, top_labels=[], top_scores=[],
                                  top_indices=[])
    assert frame_classes(unnamed) == () and tracker.named(track, unnamed) is unnamed
    assert tracker.named(track + 1, first) is first  # no such track
