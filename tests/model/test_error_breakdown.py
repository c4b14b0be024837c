"""Where naming errors come from (ovsam_model.evaluation.error_breakdown): the model's own answers and
masks as `evaluate` counts them, the same head on ground-truth boxes, the split by covering and size,
and the moving worlds' objects, mostly hidden ones included."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ovsam_model.build import shipped_weights_dir
from ovsam_model.evaluation import evaluate, held_out_scenes
from ovsam_model.evaluation.error_breakdown import (
    MOVING_WORLD_FRAMES,
    ObjectOutcome,
    breakdown,
    covered_share,
    main,
    moving_world_outcomes,
    object_outcomes,
    scene_outcomes,
)
from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.synthetic.classes import CLASS_NAMES, NOVEL_INDICES
from ovsam_model.synthetic.motion import ASKABLE_MIN_PIXELS, MovingWorld
from ovsam_model.synthetic.scenes import MIN_VISIBLE_FRACTION


def test_covered_share_counts_other_objects_inside_the_box_not_background_or_itself() -> None:
    instance_map = np.zeros((10, 10), dtype=np.uint8)
    instance_map[0:5, 0:5] = 1
    instance_map[2:3, 2:4] = 2         # 2 of the 25 pixels of object 0's box
    instance_map[6:8, 6:8] = 3         # outside it
    box = masks_to_boxes((instance_map == 1)[None])[0]
    assert covered_share(instance_map, 0, box) == pytest.approx(2 / 25)
    assert covered_share(instance_map, 2, masks_to_boxes((instance_map == 3)[None])[0]) == 0.0


def test_bins_split_each_class_split_and_keep_both_accuracies_and_the_mask_iou() -> None:
    outcomes = [
        ObjectOutcome(label=0, novel=False, right=True, right_with_true_box=True, covered=0.0, size=40.0,
                      mask_iou=0.9),
        ObjectOutcome(label=0, novel=False, right=False, right_with_true_box=True, covered=0.2, size=60.0,
                      mask_iou=0.6),
        ObjectOutcome(label=0, novel=False, right=False, right_with_true_box=False, covered=1.0, size=120.0,
                      mask_iou=0.0),
        ObjectOutcome(label=3, novel=True, right=True, right_with_true_box=False, covered=0.01, size=90.0,
                      mask_iou=0.8),
    ]
    rows = {(r.split, r.by, r.low): r for r in breakdown(outcomes)}
    assert (rows["base", "all", 0.0].count, rows["base", "all", 0.0].accuracy) == (3, pytest.approx(1 / 3))
    assert rows["base", "all", 0.0].accuracy_true_box == pytest.approx(2 / 3)
    assert rows["base", "all", 0.0].mask_miou == pytest.approx(0.5)
    assert rows["base", "covered", 0.35].mask_miou == 0.0 and rows["novel", "covered", 0.01].mask_miou == 0.8
    assert rows["base", "covered", 0.15].count == 1 and rows["base", "covered", 0.15].accuracy_true_box == 1.0
    assert rows["base", "covered", 0.35].count == 1          # a fully covered box falls in the last bin
    assert rows["novel", "covered", 0.01].count == 1          # a bin holds its lower edge
    assert rows["novel", "size", 90.0].count == 1 and rows["base", "size", 90.0].count == 1
    assert rows["novel", "size", 0.0].count == 0 and math.isnan(rows["novel", "size", 0.0].accuracy)
    for split in ("base", "novel"):
        for by in ("covered", "size"):
            assert sum(r.count for r in rows.values() if r.split == split and r.by == by) == \
                rows[split, "all", 0.0].count


@pytest.fixture(scope="module")
def predictor() -> OVSAMPredictor:
    return OVSAMPredictor.from_pretrained("ovsam-shapes", shipped_weights_dir("ovsam-shapes"), device="cpu")


def test_the_models_answers_are_those_evaluate_counts(predictor) -> None:
    scenes = held_out_scenes(12)
    text = predictor.vocabulary.subset(CLASS_NAMES).embeddings
    outcomes = object_outcomes(predictor.model, text, scenes, progress=False)
    labels = [int(label) for i in range(len(scenes)) for label in scenes.scene(i).labels]
    assert [o.label for o in outcomes] == labels
    assert [o.novel for o in outcomes] == [label in NOVEL_INDICES for label in labels]
    figures = evaluate(predictor.model, text, scenes, progress=False)["head_only"]
    assert np.mean([o.right for o in outcomes if not o.novel]) == pytest.approx(figures["acc_base"])
    assert np.mean([o.right for o in outcomes if o.novel]) == pytest.approx(figures["acc_novel"])
    assert np.mean([o.mask_iou for o in outcomes]) == pytest.approx(figures["box_miou"])
    sizes = [float(np.sqrt(np.prod(box[2:] - box[:2]))) for i in range(len(scenes)) for box in scenes.scene(i).boxes]
    assert [o.size for o in outcomes] == pytest.approx(sizes)


def test_ground_truth_boxes_name_more_objects_than_the_predicted_masks_boxes(predictor) -> None:
    # Measured on the first 200 held-out scenes (702 objects), 2026-12-03: the shipped files name
    # 546 right from their masks' boxes and 574 from the ground-truth boxes (+4.0 %); two other
    # draws of the recipe +4.6 % and +4.0 %. On 12 scenes the two columns agree object for object,
    # so a smaller set would not tell the two boxes apart.
    text = predictor.vocabulary.subset(CLASS_NAMES).embeddings
    outcomes = object_outcomes(predictor.model, text, held_out_scenes(200), progress=False)
    assert len(outcomes) == 702
    assert sum(o.right_with_true_box for o in outcomes) >= sum(o.right for o in outcomes) + 0.02 * len(outcomes)


def test_outcomes_of_chosen_objects_are_theirs_in_the_order_asked(predictor) -> None:
    # The moving world asks about some objects of a frame only (those a person could name).
    text = predictor.vocabulary.subset(CLASS_NAMES).embeddings
    scenes = held_out_scenes(12)
    scene = next(scenes.scene(i) for i in range(len(scenes)) if len(scenes.scene(i).labels) >= 3)
    every = scene_outcomes(predictor.model, text, scene)
    chosen = scene_outcomes(predictor.model, text, scene, [2, 0])
    assert [o.label for o in every] == scene.labels.tolist()
    assert chosen == [every[2], every[0]]
    assert scene_outcomes(predictor.model, text, scene, []) == []


def test_moving_worlds_count_every_shown_object_mostly_hidden_ones_too(predictor) -> None:
    # The held-out set shows 55 % of nearly every object; the moving worlds need not, and those objects
    # are where masks run into their neighbours. In worlds 1-4 two frames of world 4 show an object of
    # which less than 55 % is visible (worlds 1-3 have none).
    text = predictor.vocabulary.subset(CLASS_NAMES).embeddings
    shown, hidden = [], 0
    for seed in (1, 2, 3, 4):
        world = MovingWorld(seed=seed, size=256, num_objects=4, speed=1.0)
        for frame in MOVING_WORLD_FRAMES:
            instance_map = world.render(frame).instance_map
            fractions = world.visible_fractions(frame, instance_map)
            for index, obj in enumerate(world.objects):
                if (instance_map == index + 1).sum() >= ASKABLE_MIN_PIXELS:
                    shown.append(obj.label)
                    hidden += fractions[index] < MIN_VISIBLE_FRACTION
    outcomes = moving_world_outcomes(predictor.model, text, worlds=4, progress=False)
    assert hidden > 0
    assert [o.label for o in outcomes] == shown
    assert all(0.0 <= o.mask_iou <= 1.0 for o in outcomes) and max(o.covered for o in outcomes) > 0.35


def test_the_command_prints_the_table_and_rejects_an_empty_set(capsys) -> None:
    assert main(["--scenes", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "with true box" in out and "box mask IoU" in out and "covered 0%-1%" in out and "size >= 90 px" in out
    assert main(["--moving-worlds", "1", "--threads", "1"]) == 0
    assert "covered 35%-100%" in capsys.readouterr().out
    assert main(["--scenes", "0"]) == 2
    assert main(["--moving-worlds", "0"]) == 2
