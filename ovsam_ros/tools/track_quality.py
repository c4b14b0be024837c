"""How well tracks keep their object: the node's engine on moving worlds, offline, without ROS.

For each world and start frame, a box around the object that shows most of itself starts a track,
as the demo's operator does; the engine then steps through the following frames, every `stride`-th
one (a node that cannot keep up with its camera works on the latest frame and skips the rest), and
each frame's tracked mask is compared with the object's truth. Frames are stamped as a 5 Hz camera
stamps them. Prints the mean mask IoU per world and over all tracks, how many tracks were lost, and
how many tracked frames were on another object (the mask overlaps a neighbour more than its own).

    python -m ovsam_ros.tools.track_quality [--seeds 7,1,2,3] [--starts 0:240:20] [--length 20]
        [--stride 1] [--speed 1.0] [--width 640] [--height 480] [--threads N]

The defaults are the demo's world size and speed, and its tracking time (4 s at 5 Hz).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ovsam_model.mask_iou import mask_pair_iou
from ovsam_model.predictor_protocol import Predictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic.motion import MovingWorld
from ovsam_ros.engine import PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.prompt_conversion import PromptRequest

CAMERA_PERIOD_NS = 200_000_000  # a 5 Hz camera, the demo's


@dataclass
class TrackRun:
    """One track: the mask IoU with its object on each frame after the first (0 once lost or on a
    frame without a mask), whether it was lost, and on how many frames it segmented a neighbour."""
    seed: int
    start: int
    ious: list[float]
    lost: bool
    frames_on_another_object: int

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else 0.0


def run_track(predictor: Predictor, world: MovingWorld, seed: int, start: int, length: int, stride: int) -> TrackRun:
    """Start a track on frame `start` from the true box of its largest object; step `length` frames."""
    engine = PerceptionEngine(predictor)
    scene = world.render(start)
    target = scene.most_visible_object()
    engine.add_frame(Frame(stamp_ns=start * CAMERA_PERIOD_NS, rgb=scene.image))
    box = scene.boxes[target]
    (answer,) = engine.answer([PromptRequest(PromptSpec("tracked", box=box), stamp_ns=start * CAMERA_PERIOD_NS,
                                             track=True)])
    if not answer.instances:
        return TrackRun(seed, start, [0.0] * length, True, 0)
    ious, lost, elsewhere = [], False, 0
    for index in range(start + stride, start + stride * (length + 1), stride):
        scene = world.render(index)
        frame = Frame(stamp_ns=index * CAMERA_PERIOD_NS, rgb=scene.image)
        engine.add_frame(frame)
        step = engine.step(frame) if not lost else None
        tracked = [result.prediction for result in step.instances] if step is not None else []
        lost = not engine.tracking
        if not tracked:
            ious.append(0.0)
            continue
        overlaps = [mask_pair_iou(tracked[0].mask, scene.instance_map == other + 1)
                    for other in range(len(scene.labels))]
        ious.append(overlaps[target])
        elsewhere += int(max(overlaps) > overlaps[target])
    return TrackRun(seed, start, ious, lost, elsewhere)


def parse_range(text: str) -> range:
    """'start:stop:step' (step 1 when left out) as a range."""
    parts = [int(part) for part in text.split(":")]
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected start:stop[:step], got {text!r}")
    return range(*parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovsam_ros.tools.track_quality",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ovsam-shapes")
    parser.add_argument("--weights", default=None, help="weights directory (default: the shipped weights)")
    parser.add_argument("--seeds", default="7,1,2,3", help="world seeds, comma-separated (7 is the demo's)")
    parser.add_argument("--starts", type=parse_range, default=range(0, 240, 20), help="start frames, start:stop:step")
    parser.add_argument("--length", type=int, default=20, help="frames stepped after the first (default 20)")
    parser.add_argument("--stride", type=int, default=1, help="step every stride-th camera frame (default 1)")
    parser.add_argument("--speed", type=float, default=1.0, help="object speed, pixels per camera frame")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.length < 1 or args.stride < 1:
        print("error: --length and --stride must be at least 1", file=sys.stderr)
        return 2
    import torch

    from ovsam_model.predictor import OVSAMPredictor

    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = OVSAMPredictor.from_pretrained(args.model, args.weights, device="cpu")
    runs = []
    for seed in (int(seed) for seed in args.seeds.split(",")):
        world = MovingWorld(seed=seed, size=args.width, height=args.height, num_objects=4, speed=args.speed)
        seed_runs = [run_track(predictor, world, seed, start, args.length, args.stride) for start in args.starts]
        runs += seed_runs
        print(f"world {seed}: mean IoU {np.mean([run.mean_iou for run in seed_runs]):.3f} "
              f"(by start: {' '.join(f'{run.mean_iou:.2f}' for run in seed_runs)})", flush=True)
    print(f"{len(runs)} tracks of {args.length} frames (every {args.stride} camera frame(s), speed {args.speed:g} px "
          f"per frame): mean IoU {np.mean([run.mean_iou for run in runs]):.3f}; lost {sum(run.lost for run in runs)}; "
          f"frames on another object {sum(run.frames_on_another_object for run in runs)} of "
          f"{sum(len(run.ious) for run in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
