"""Tracking with the shipped model through the engine, on the demo's default world (640x480, seed 7),
where the blue square lies under two triangles: the track must keep segmenting the square, not drift
onto its neighbours as the box it is re-prompted with reaches into them."""
from __future__ import annotations

import numpy as np

from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.mask_iou import mask_pair_iou
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic.motion import MovingWorld
from ovsam_ros.engine import PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.prompt_conversion import PromptRequest

START = 24  # where the demo asks, in the stretch where the objects overlap most


def test_a_tracked_object_in_a_pile_keeps_its_own_mask() -> None:
    engine = PerceptionEngine(OVSAMPredictor.from_pretrained("ovsam-shapes"))
    world = MovingWorld(seed=7, size=640, height=480, num_objects=4, speed=1.0)
    scene = world.render(START)
    target = int(np.argmax([(scene.instance_map == i + 1).sum() for i in range(len(scene.labels))]))
    engine.frames.add(Frame(stamp_ns=START, rgb=scene.image))
    box = masks_to_boxes((scene.instance_map == target + 1)[None])[0]
    (answer,) = engine.answer([PromptRequest(PromptSpec("square", box=box), stamp_ns=START, track=True)])
    (first,) = answer.instances
    assert first.track_id == 1
    ious = []
    for index in range(START + 1, START + 9):
        scene = world.render(index)
        frame = Frame(stamp_ns=index, rgb=scene.image)
        engine.frames.add(frame)
        step = engine.step(frame)
        assert step is not None and not step.failures, step.failures if step else None
        (tracked,) = step.instances
        assert tracked.track_id == 1
        ious.append(mask_pair_iou(tracked.prediction.mask, scene.instance_map == target + 1))
    # Measured 0.80-0.82 on each of these frames; re-prompted with the grown box alone, the mask ran
    # into the triangle over the square from the second frame (IoU 0.76, 0.34, 0.21, ... 0.02).
    assert min(ious) > 0.7, np.round(ious, 2)
