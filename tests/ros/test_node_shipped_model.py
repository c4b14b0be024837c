"""The product end to end: ovsam_node on the shipped ovsam-shapes model, frames of the synthetic world,
and answers checked against the world's truth (mask IoU, label), including text queries and tracking."""
from __future__ import annotations

import numpy as np
import pytest
from geometry_msgs.msg import Point
from std_msgs.msg import String

from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.synthetic.motion import MovingWorld
from ovsam_model.synthetic.prompts import mask_centre_point
from ovsam_ros.msg import Prompt
from ovsam_ros.tools.demo import iou, mask_from_instance
from tests.ros.node_harness import NodeUnderTest, box_prompt

pytestmark = pytest.mark.ros
STAMP0 = 5_000_000_000


@pytest.fixture(scope="module")
def world():
    return MovingWorld(seed=11, size=256, num_objects=4, speed=1.0)


@pytest.fixture(scope="module")
def node(world):
    harness = NodeUnderTest({"image_qos": "reliable", "text_rate_hz": 2.0})  # defaults: the shipped model
    try:
        harness.wait_ready()
        for i in range(3):
            harness.publish_frame(world.render(i).image, STAMP0 + i)
        harness.spin_for(1.0)
        yield harness
    finally:
        harness.close()


def visible_objects(scene, min_pixels: int = 400) -> list[int]:
    return [i for i in range(len(scene.labels)) if (scene.instance_map == i + 1).sum() >= min_pixels]


def test_clicks_and_boxes_are_segmented_and_named(node, world):
    scene = world.render(1)
    prompts, truth = [], {}
    for index in visible_objects(scene):
        mask = scene.instance_map == index + 1
        x, y = mask_centre_point(mask)
        click = Prompt(id=f"click-{index}", points=[Point(x=float(x), y=float(y))])
        click.header.stamp.sec, click.header.stamp.nanosec = divmod(STAMP0 + 1, 1_000_000_000)
        ys, xs = np.nonzero(mask)
        box = box_prompt(f"box-{index}", [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], stamp_ns=STAMP0 + 1)
        prompts += [click, box]
        truth[click.id] = truth[box.id] = (mask, CLASS_NAMES[int(scene.labels[index])])
    node.send_prompts(prompts)
    answers = node.answers_for(set(truth))
    ious, correct = [], 0
    for prompt_id, (payload, array_msg) in answers.items():
        assert not isinstance(payload, str), f"{prompt_id}: {payload}"
        assert array_msg.header.stamp.nanosec == (STAMP0 + 1) % 1_000_000_000  # answered on its own frame
        mask, label = truth[prompt_id]
        ious.append(iou(mask_from_instance(payload, 256, 256), mask))
        correct += payload.label == label
    print(f"shipped model through the node: mean IoU {np.mean(ious):.3f}, labels {correct}/{len(ious)}")
    # Measured on this scene: mean IoU 0.77, 6 of 8 labels (the model card: box mIoU 0.85, base accuracy 0.82).
    assert np.mean(ious) >= 0.65 and min(ious) >= 0.3
    assert correct >= 0.5 * len(ious)


def test_text_query_publishes_only_the_queried_classes(node, world):
    from ovsam_ros.srv import Segment
    from tests.ros.node_harness import image_msg

    scene = world.render(2)
    everything = node.call(Segment, "segment", Segment.Request(image=image_msg(scene.image, 77),
                                                                text_queries=list(CLASS_NAMES)))
    assert everything.success, everything.message
    found = everything.result.instances
    # How well segment-everything finds objects is the model's business (ovsam-model eval); here the
    # node's text-query path must publish exactly the queried classes of what the model finds.
    assert found, "segment everything found nothing in a four-object scene"
    wanted = found[0].label
    absent = next(name for name in CLASS_NAMES if name not in {i.label for i in found})
    seen = len(node.results)
    node.text_pub.publish(String(data=f"{wanted}, {absent}"))
    for i in range(3, 8):
        node.publish_frame(scene.image, STAMP0 + i)  # a still scene
        node.spin_for(0.4)
    node.spin_until(lambda: any(not inst.prompt_id for m in node.results[seen:] for inst in m.instances),
                    "text-query instances")
    node.text_pub.publish(String(data=""))
    published = [inst for m in node.results[seen:] for inst in m.instances if not inst.prompt_id]
    assert {inst.label for inst in published} <= {wanted, absent}
    assert wanted in {inst.label for inst in published}


def test_tracked_object_keeps_its_id(node, world):
    scene = world.render(10)
    node.publish_frame(scene.image, STAMP0 + 10)
    node.spin_for(0.5)
    index = max(visible_objects(scene), key=lambda i: (scene.instance_map == i + 1).sum())
    ys, xs = np.nonzero(scene.instance_map == index + 1)
    seen = len(node.results)
    node.send_prompts([box_prompt("tracked", [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                  stamp_ns=STAMP0 + 10, track=True)])
    node.answers_for({"tracked"})
    ids, ious = set(), []
    for frame in range(11, 17):
        node.publish_frame(world.render(frame).image, STAMP0 + frame)
        node.spin_for(0.6)
    for msg in node.results[seen:]:
        frame = msg.header.stamp.nanosec - STAMP0 % 1_000_000_000
        for inst in msg.instances:
            if inst.prompt_id == "tracked" and frame > 10:
                ids.add(inst.id)
                ious.append(iou(mask_from_instance(inst, 256, 256), world.render(frame).instance_map == index + 1))
    assert len(ids) == 1 and 0 not in ids
    assert len(ious) >= 2 and np.mean(ious) >= 0.6, ious
