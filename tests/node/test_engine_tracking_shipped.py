"""Tracking with the shipped model through the engine, on the demo's default world (640x480, seed 7),
where the blue square lies under two triangles: the track must keep segmenting the square for the
demo's four seconds, not drift onto the neighbours its prompts reach into, and keep one name; and a
fast object the engine sees only every fifth camera frame must keep its track."""
from __future__ import annotations

import numpy as np

from ovsam_model.mask_iou import mask_pair_iou
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic.motion import MovingWorld
from ovsam_ros.engine import PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.prompt_conversion import PromptRequest

CAMERA_PERIOD_NS = 200_000_000  # 5 Hz, the demo's camera


def track_ious(world: MovingWorld, start: int, frames: int, stride: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Track the object showing most of itself on frame `start` from its true box, then step every
    `stride`-th frame: per frame, the mask IoU with that object, the largest with any other, and the
    label published."""
    engine = PerceptionEngine(OVSAMPredictor.from_pretrained("ovsam-shapes"))
    scene = world.render(start)
    target = scene.most_visible_object()
    engine.add_frame(Frame(stamp_ns=start * CAMERA_PERIOD_NS, rgb=scene.image))
    box = scene.boxes[target]
    (answer,) = engine.answer([PromptRequest(PromptSpec("tracked", box=box), stamp_ns=start * CAMERA_PERIOD_NS,
                                             track=True)])
    assert answer.instances[0].track_id == 1
    own, other, labels = [], [], []
    for index in range(start + stride, start + stride * (frames + 1), stride):
        scene = world.render(index)
        frame = Frame(stamp_ns=index * CAMERA_PERIOD_NS, rgb=scene.image)
        engine.add_frame(frame)
        step = engine.step(frame)
        assert step is not None and not step.failures, step.failures if step else None
        (tracked,) = step.instances
        assert tracked.track_id == 1
        mask = tracked.prediction.mask
        overlaps = [mask_pair_iou(mask, scene.instance_map == i + 1) for i in range(len(scene.labels))]
        own.append(overlaps.pop(target))
        other.append(max(overlaps))
        labels.append(tracked.prediction.label)
    return np.array(own), np.array(other), labels


def test_a_tracked_object_in_a_pile_keeps_its_own_mask() -> None:
    own, other, labels = track_ious(MovingWorld(seed=7, size=640, height=480, num_objects=4, speed=1.0), 24, 20, 1)
    # Measured 0.61-0.84 (mean 0.77), every frame on the square. The tracker before (grown box and an
    # uncarried click) held 0.75-0.82 for 9 frames, then moved onto the triangle over the square
    # (0.46, then 0.01-0.02 from frame 35).
    assert (own > other).all() and own.min() > 0.5 and own.mean() > 0.7, np.round(own, 2)
    # Named by the track's vote: "blue square" on every frame. Named frame by frame, the same masks
    # were called something else on 3 of the 20 frames, and the label changed 4 times.
    assert labels == ["blue square"] * 20, labels


def test_a_fast_object_seen_every_fifth_frame_keeps_its_track() -> None:
    own, other, _ = track_ious(MovingWorld(seed=7, size=640, height=480, num_objects=4, speed=4.0), 20, 10, 5)
    # Measured 0.88-0.93 on each of these frames. The tracker before, which clicked where the object
    # was, fell behind it: 0.48, 0.29, 0.01, 0.00 on the last four, the last three on a neighbour.
    assert (own > other).all() and own.min() > 0.8, np.round(own, 2)
