"""The synthetic shapes world: classes and split, seeded scenes with exact masks, crops, prompts."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_model.synthetic import (
    BASE_CLASSES,
    CLASS_NAMES,
    COLOURS,
    NOVEL_CLASSES,
    SHAPES,
    Scene,
    class_index,
    generate_scene,
    generate_scene_set,
    is_novel,
)
from ovsam_model.synthetic.classes import BASE_INDICES, NOVEL_INDICES
from ovsam_model.synthetic.crops import caption, object_crops
from ovsam_model.synthetic.prompts import jitter_box, mask_centre_point, random_interior_point


def test_forty_two_classes_six_novel_and_every_word_seen_in_base() -> None:
    assert len(CLASS_NAMES) == 42 and len(set(CLASS_NAMES)) == 42
    assert set(NOVEL_CLASSES) == {"red star", "green hexagon", "blue cross", "yellow circle", "purple square",
                                  "orange triangle"}
    assert len(BASE_CLASSES) == 36 and not set(BASE_CLASSES) & set(NOVEL_CLASSES)
    base_words = {word for name in BASE_CLASSES for word in name.split()}
    assert set(COLOURS) | set(SHAPES) <= base_words
    assert all(is_novel(i) for i in NOVEL_INDICES) and not any(is_novel(i) for i in BASE_INDICES)
    assert CLASS_NAMES[class_index("white cross")] == "white cross"
    with pytest.raises(KeyError, match="colour"):
        class_index("pink circle")


def test_same_seed_same_scenes_other_seed_other_scenes() -> None:
    first, again = generate_scene_set(3, seed=7), generate_scene_set(3, seed=7)
    other = generate_scene_set(3, seed=8)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.instance_maps, again.instance_maps)
    assert np.array_equal(first.labels, again.labels)
    assert not np.array_equal(first.images, other.images)


def test_scenes_have_one_to_six_visible_objects_with_exact_disjoint_masks() -> None:
    rng = np.random.default_rng(3)
    counts = []
    for _ in range(30):
        scene = generate_scene(rng, size=256)
        n = len(scene.labels)
        counts.append(n)
        assert scene.image.shape == (256, 256, 3) and scene.image.dtype == np.uint8
        masks = scene.masks
        assert masks.shape == (n, 256, 256)
        assert (masks.sum(0) <= 1).all()  # visible masks never overlap
        assert all(m.sum() >= 250 for m in masks)
        for mask, box in zip(masks, scene.boxes):
            ys, xs = np.nonzero(mask)
            assert (box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).all()
        # The object's pixels carry its colour: its mean is closer to its class colour than the
        # background around it is (masks are exact, not approximate).
        for mask, label in zip(masks, scene.labels):
            colour = np.asarray(COLOURS[CLASS_NAMES[label].split()[0]], dtype=float)
            inside = scene.image[mask].astype(float).mean(0)
            assert np.abs(inside - colour).mean() < 40
    assert min(counts) >= 1 and max(counts) <= 6 and len(set(counts)) >= 3


def test_piled_scenes_lay_their_objects_on_each_other_and_keep_each_recognisable() -> None:
    piled = generate_scene_set(30, seed=(0, 5), classes=BASE_INDICES, min_objects=3, cluster_spread=30.0)
    spread = generate_scene_set(30, seed=(0, 5), classes=BASE_INDICES, min_objects=3)

    def covered_and_apart(scenes):
        covered, apart = [], []
        for i in range(len(scenes)):
            scene = scenes.scene(i)
            assert 1 <= len(scene.labels) <= 6 and not np.isin(scene.labels, NOVEL_INDICES).any()
            assert (scene.masks.sum(0) <= 1).all() and all(m.sum() >= 250 for m in scene.masks)
            boxes = scene.boxes
            for j, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
                region = scene.instance_map[y1:y2, x1:x2]
                covered.append(((region != 0) & (region != j + 1)).mean())
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            apart.append(np.linalg.norm(centres - centres.mean(0), axis=1).mean())
        return float(np.mean(covered)), float(np.mean(apart))

    piled_covered, piled_apart = covered_and_apart(piled)
    spread_covered, spread_apart = covered_and_apart(spread)
    # Measured on these 30 scenes each: piles cover 0.22 of an object's box with other objects and
    # keep centres 37 px from their mean (4.6 objects a scene); spread scenes 0.08 and 71 px (4.2).
    assert piled_covered > 2 * spread_covered and piled_apart < 0.7 * spread_apart
    assert np.mean([len(piled.scene(i).labels) for i in range(len(piled))]) >= 3.5


def test_scene_sets_concatenate_in_order() -> None:
    first, second = generate_scene_set(2, seed=1), generate_scene_set(3, seed=2)
    both = type(first).concatenate([first, second])
    assert len(both) == 5
    assert np.array_equal(both.images[:2], first.images)
    assert np.array_equal(both.instance_maps[2:], second.instance_maps)
    assert np.array_equal(both.scene(4).labels, second.scene(2).labels)


def test_restricted_classes_never_render_others() -> None:
    scenes = generate_scene_set(20, seed=(0, 1), classes=BASE_INDICES)
    labels = scenes.labels[scenes.labels >= 0]
    assert len(labels) and not np.isin(labels, NOVEL_INDICES).any()


def test_scene_set_round_trips_through_a_file(tmp_path) -> None:
    scenes = generate_scene_set(2, seed=1)
    scenes.save(tmp_path / "s.npz")
    loaded = type(scenes).load(tmp_path / "s.npz")
    assert np.array_equal(loaded.images, scenes.images) and np.array_equal(loaded.labels, scenes.labels)
    assert np.array_equal(loaded.scene(1).masks, scenes.scene(1).masks)


def test_crops_centre_the_object_and_captions_name_its_class() -> None:
    scenes = generate_scene_set(5, seed=2)
    crops = object_crops(scenes, crop_size=64, seed=0, variants=2, classes=BASE_INDICES)
    assert crops.images.shape[1:] == (64, 64, 3) and len(crops.images) == len(crops.labels)
    assert not np.isin(crops.labels, NOVEL_INDICES).any()
    # The crop's centre pixel shows the object's colour far more often than not.
    close = []
    for image, label in zip(crops.images, crops.labels):
        colour = np.asarray(COLOURS[CLASS_NAMES[label].split()[0]], dtype=float)
        close.append(np.abs(image[28:36, 28:36].astype(float).mean((0, 1)) - colour).mean() < 50)
    assert np.mean(close) > 0.7
    rng = np.random.default_rng(0)
    assert all("blue star" in caption(class_index("blue star"), rng) for _ in range(10))


def test_prompts_lie_inside_their_masks() -> None:
    rng = np.random.default_rng(5)
    scene = generate_scene(rng, size=256)
    for mask, box in zip(scene.masks, scene.boxes):
        for point in (mask_centre_point(mask), random_interior_point(mask, rng)):
            assert mask[int(point[1]), int(point[0])]
        jittered = jitter_box(box, rng, amount=0.05, limit=8.0)
        assert np.abs(jittered - box).max() <= 8.0 + 1e-4


def test_moving_world_renders_camera_sized_frames_and_knows_what_is_hidden() -> None:
    from ovsam_model.synthetic.motion import MovingWorld

    world = MovingWorld(seed=7, size=640, height=480, num_objects=4, speed=3.0)
    for frame in (0, 50, 200):
        scene = world.render(frame)
        assert scene.image.shape == (480, 640, 3) and scene.instance_map.shape == (480, 640)
        # Objects bounce inside the frame: their visible pixels are what the instance map says.
        fractions = world.visible_fractions(frame)
        assert all(0.0 <= f <= 1.0 for f in fractions) and len(fractions) == 4
        assert all((scene.instance_map == i + 1).any() == (f > 0) for i, f in enumerate(fractions))
    alone = MovingWorld(seed=3, size=320, height=200, num_objects=1)
    assert alone.visible_fractions(0) == [1.0]  # nothing is drawn over a lone object
    crowded = MovingWorld(seed=7, size=640, height=480, num_objects=4)
    fractions = crowded.visible_fractions(0)
    assert fractions[-1] == 1.0  # the last object is drawn on top of the others
    assert min(fractions) < 0.9  # seed 7 starts with its objects overlapping


def test_askable_objects_show_enough_pixels_and_enough_of_their_shape() -> None:
    from ovsam_model.synthetic.motion import ASKABLE_MIN_PIXELS, MovingWorld
    from ovsam_model.synthetic.scenes import MIN_VISIBLE_FRACTION

    world = MovingWorld(seed=7, size=640, height=480, num_objects=4)
    left_out = 0
    for frame in range(0, 150, 10):
        scene = world.render(frame)
        expected = []
        for index, obj in enumerate(world.objects):
            visible = int((scene.instance_map == index + 1).sum())
            whole = int(world._mask(obj, frame).sum())  # its whole shape, hidden parts included
            if visible >= ASKABLE_MIN_PIXELS and visible >= MIN_VISIBLE_FRACTION * whole:
                expected.append(index)
        assert world.askable(frame) == expected
        assert world.askable(frame, scene.instance_map) == expected
        left_out += len(world.objects) - len(expected)
    assert left_out > 0  # seed 7's objects overlap: some are too hidden to ask about


def test_a_stack_of_boxes_is_jittered_box_by_box() -> None:
    boxes = np.array([[10.0, 20.0, 90.0, 100.0], [0.0, 5.0, 40.0, 30.0], [50.0, 50.0, 52.0, 60.0]], np.float32)
    together = jitter_box(boxes, np.random.default_rng(3), amount=0.2, limit=6.0)
    rng = np.random.default_rng(3)
    one_by_one = np.stack([jitter_box(box, rng, amount=0.2, limit=6.0) for box in boxes])
    assert together.shape == (3, 4) and together.dtype == np.float32
    assert np.array_equal(together, one_by_one)
    assert 0 < np.abs(together - boxes).max() <= 6.0 + 1e-4
    # The offset scales with each box's own side: the 2 px wide box barely moves sideways.
    assert np.abs(together[2, [0, 2]] - boxes[2, [0, 2]]).max() < 2.0


def test_the_most_visible_object_is_the_one_showing_the_most_pixels() -> None:
    instance_map = np.zeros((6, 6), np.uint8)
    instance_map[0:2, 0:2] = 1   # 4 pixels
    instance_map[2:5, 2:5] = 2   # 9 pixels
    instance_map[5, :] = 3       # 6 pixels
    scene = Scene(np.zeros((6, 6, 3), np.uint8), instance_map, np.array([0, 1, 2]))
    assert scene.most_visible_object() == 1
