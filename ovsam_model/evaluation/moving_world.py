"""The demo's questions without the node: how often the predictor names the objects of a moving world.

`./scripts/demo` asks about the objects of the few frames the camera has reached once the node is
up, so its label accuracy moves from run to run with start-up time. This asks the same questions
(a click at the centre of each askable object's visible mask, a box around it; see
`MovingWorld.askable`) on every frame of a range, through `OVSAMPredictor.predict`, and reports how
often each object is named right, and what a demo of `rounds` questions scores from each start
frame (round k on the k-th frame after the start, about object k of that frame's askable ones,
clicks on even rounds and boxes on odd ones, as the demo alternates them).
For each object it also reports how often the same head names it from its true box (the visible
mask's) instead of its predicted mask's box, as `error_breakdown` does on the held-out set: the gap
is what the masks cost in this world, the rest is what the head cannot tell apart.

    python -m ovsam_model.evaluation.moving_world [--seed 7] [--frames 300] [--width 640]
        [--height 480] [--objects 4] [--speed 1.0] [--rounds 8] [--threads N]

The defaults are the demo's default world.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ovsam_model.evaluation.error_breakdown import scene_outcomes
from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.synthetic.motion import MovingWorld
from ovsam_model.synthetic.prompts import mask_centre_point


@dataclass
class FrameAnswers:
    """Whether the predictor named each askable object of one frame right, by prompt kind, and
    whether its head would with the object's true box pooled instead of its predicted mask's."""
    askable: list[int]                                      # object indices, in the world's order
    click_right: dict[int, bool] = field(default_factory=dict)
    box_right: dict[int, bool] = field(default_factory=dict)
    true_box_right: dict[int, bool] = field(default_factory=dict)


def answer_frames(predictor: OVSAMPredictor, world: MovingWorld, frames: Iterable[int]) -> dict[int, FrameAnswers]:
    """The demo's click and box on every askable object of each frame, named by `predictor`.
    Raises UnknownClassError when the predictor's vocabulary lacks a class of the shapes world."""
    text = predictor.vocabulary.subset(CLASS_NAMES).embeddings
    answers = {}
    for frame in frames:
        scene = world.render(frame)
        askable = world.askable(frame, scene.instance_map)
        prompts = []
        for index in askable:
            mask = scene.instance_map == index + 1
            prompts.append(PromptSpec(f"click-{index}", points=[mask_centre_point(mask)]))
            prompts.append(PromptSpec(f"box-{index}", box=masks_to_boxes(mask[None])[0]))
        record = FrameAnswers(askable)
        if prompts:
            predictor.set_image(scene.image)
            for prompt, prediction in zip(prompts, predictor.predict(prompts)):
                kind, number = prompt.prompt_id.split("-")
                right = prediction.label == CLASS_NAMES[int(scene.labels[int(number)])]
                (record.click_right if kind == "click" else record.box_right)[int(number)] = right
            for index, outcome in zip(askable, scene_outcomes(predictor.model, text, scene, askable)):
                record.true_box_right[index] = outcome.right_with_true_box
        answers[frame] = record
    return answers


def run_accuracies(answers: dict[int, FrameAnswers], rounds: int = 8, true_box: bool = False) -> dict[int, float]:
    """For each start frame with `rounds` answered frames after it: the share of a demo's questions
    named right (frames with no askable object ask nothing). With `true_box`, each question counts
    as its object named from its true box."""
    frames = sorted(answers)
    scores = {}
    for position, start in enumerate(frames[:len(frames) - rounds + 1]):
        right = []
        for k in range(rounds):
            record = answers[frames[position + k]]
            if record.askable:
                target = record.askable[k % len(record.askable)]
                if true_box:
                    right.append(record.true_box_right[target])
                else:
                    right.append((record.click_right if k % 2 == 0 else record.box_right)[target])
        if right:
            scores[start] = float(np.mean(right))
    return scores


def object_summary(world: MovingWorld, answers: dict[int, FrameAnswers]) -> list[tuple[str, int, float, float, float]]:
    """Per object: its class, the frames it was askable in, and the share of them its click, its box
    and its true box were named right (NaN when never askable)."""
    rows = []
    for index, obj in enumerate(world.objects):
        asked = [a for a in answers.values() if index in a.askable]
        click, box, true_box = (float(np.mean([getattr(a, kind)[index] for a in asked])) if asked else float("nan")
                                for kind in ("click_right", "box_right", "true_box_right"))
        rows.append((CLASS_NAMES[obj.label], len(asked), click, box, true_box))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovsam_model.evaluation.moving_world",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ovsam-shapes")
    parser.add_argument("--weights", default=None, help="weights directory (default: the shipped weights)")
    parser.add_argument("--seed", type=int, default=7, help="world seed (default 7, the demo's)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=8, help="questions of one demo run (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.frames < args.rounds:
        print(f"error: --frames ({args.frames}) must be at least --rounds ({args.rounds})", file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ovsam_model.vocabulary import UnknownClassError

    predictor = OVSAMPredictor.from_pretrained(args.model, args.weights, device="cpu")
    world = MovingWorld(seed=args.seed, size=args.width, height=args.height, num_objects=args.objects,
                        speed=args.speed)
    try:
        answers = answer_frames(predictor, world, range(args.frames))
    except UnknownClassError as error:
        print(f"error: the model's vocabulary lacks a shapes class: {error}", file=sys.stderr)
        return 1
    print(f"world seed {args.seed}, {args.width}x{args.height}, frames 0-{args.frames - 1}; named right "
          "(true box: the same head on the object's own box instead of its predicted mask's):")
    for name, count, click, box, true_box in object_summary(world, answers):
        print(f"  {name:16s} askable in {count:4d} frames: click {click:.2f}, box {box:.2f}, true box {true_box:.2f}")
    scores = run_accuracies(answers, args.rounds)
    if not scores:
        print(f"no start frame had a question in its {args.rounds} frames")
        return 0
    values = np.array(list(scores.values()))
    true_box_values = np.array(list(run_accuracies(answers, args.rounds, true_box=True).values()))
    print(f"{args.rounds}-question runs over {len(values)} start frames: mean {values.mean():.2f}, "
          f"more than half right from {np.mean(values > 0.5):.0%} of start frames; "
          f"from true boxes {true_box_values.mean():.2f}")
    starts = np.array(list(scores))
    for low in range(0, args.frames, 50):
        chosen = (starts >= low) & (starts < low + 50)
        if chosen.any():
            print(f"  starts {low}-{low + 49}: mean {values[chosen].mean():.2f}, "
                  f"from true boxes {true_box_values[chosen].mean():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
