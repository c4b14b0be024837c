"""The demo's questions asked offline (ovsam_model.evaluation.moving_world): the same objects and
prompts as the demo, the predictor's own answers, and the demo's round order."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ovsam_model.build import shipped_weights_dir
from ovsam_model.evaluation.moving_world import FrameAnswers, answer_frames, main, object_summary, run_accuracies
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.synthetic.motion import MovingWorld
from ovsam_model.synthetic.prompts import mask_centre_point


@pytest.fixture(scope="module")
def predictor() -> OVSAMPredictor:
    return OVSAMPredictor.from_pretrained("ovsam-shapes", shipped_weights_dir("ovsam-shapes"), device="cpu")


def test_each_askable_object_gets_a_click_and_a_box_answered_as_the_predictor_answers_them(predictor) -> None:
    world = MovingWorld(seed=7, size=640, height=480, num_objects=4)
    frames = [0, 40, 180]
    answers = answer_frames(predictor, world, frames)
    assert sorted(answers) == frames
    for frame in frames:
        scene = world.render(frame)
        record = answers[frame]
        assert record.askable == world.askable(frame)
        assert set(record.click_right) == set(record.box_right) == set(record.true_box_right) == set(record.askable)
        predictor.set_image(scene.image)
        for index in record.askable:
            mask = scene.instance_map == index + 1
            ys, xs = np.nonzero(mask)
            truth = CLASS_NAMES[int(scene.labels[index])]
            click = predictor.predict([PromptSpec("c", points=[mask_centre_point(mask)])])[0]
            box = predictor.predict([PromptSpec("b", box=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])])[0]
            assert record.click_right[index] == (click.label == truth)
            assert record.box_right[index] == (box.label == truth)
    rows = object_summary(world, answers)
    assert [row[0] for row in rows] == [CLASS_NAMES[obj.label] for obj in world.objects]
    assert all(row[1] == sum(index in answers[f].askable for f in frames) for index, row in enumerate(rows))


def test_a_run_asks_one_object_per_frame_alternating_click_and_box() -> None:
    # Frame 2 has no askable object: it asks nothing. Round k asks object askable[k % n], a click
    # on even rounds, a box on odd ones.
    answers = {
        0: FrameAnswers([0, 1], click_right={0: True, 1: False}, box_right={0: False, 1: False},
                        true_box_right={0: False, 1: True}),
        1: FrameAnswers([0, 1], click_right={0: False, 1: False}, box_right={0: False, 1: True},
                        true_box_right={0: True, 1: False}),
        2: FrameAnswers([]),
        3: FrameAnswers([2], click_right={2: False}, box_right={2: True}, true_box_right={2: True}),
    }
    # Start 0: round 0 click on 0 (right), round 1 box on 1 (right), round 2 nothing, round 3 box
    # on 2 (right). Start 1: click on 0 (wrong), nothing, click on 2 (wrong).
    assert run_accuracies(answers, rounds=4) == {0: 1.0}
    assert run_accuracies(answers, rounds=3) == {0: 1.0, 1: 0.0}
    # From true boxes the same objects are asked about, each scored by its true-box answer: start 0
    # asks 0 (wrong), 1 (wrong), nothing, 2 (right); start 1 asks 0 (right), nothing, 2 (right).
    assert run_accuracies(answers, rounds=4, true_box=True) == {0: pytest.approx(1 / 3)}
    assert run_accuracies(answers, rounds=3, true_box=True) == {0: 0.0, 1: 1.0}


def test_true_box_answers_do_not_depend_on_the_masks_and_box_answers_do(predictor) -> None:
    # The true-box column pools the object's own box, so a decoder whose masks are ruined changes
    # the box prompts' answers (they pool the predicted mask's box) and leaves it as it was.
    world = MovingWorld(seed=7, size=640, height=480, num_objects=4)
    frames = [0, 40, 180]
    shipped = answer_frames(predictor, world, frames)
    ruined = OVSAMPredictor.from_pretrained("ovsam-shapes", shipped_weights_dir("ovsam-shapes"), device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in ruined.model.mask_decoder.mask_decoder.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * parameter.std().clamp(min=0.1))
    answers = answer_frames(ruined, world, frames)
    assert all(answers[f].true_box_right == shipped[f].true_box_right for f in frames)
    assert any(answers[f].box_right != shipped[f].box_right for f in frames)


def test_the_command_prints_each_objects_rates_and_the_runs(capsys) -> None:
    assert main(["--frames", "3", "--rounds", "2", "--objects", "2", "--seed", "3", "--width", "320",
                 "--height", "240"]) == 0
    out = capsys.readouterr().out
    assert "askable in" in out and "2-question runs over 2 start frames" in out
    assert "true box" in out and "from true boxes" in out
    assert main(["--frames", "2", "--rounds", "8"]) == 2
