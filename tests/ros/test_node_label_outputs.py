"""The standard-pattern outputs of ovsam_node as a real process, read by real subscribers:
`instance_ids` and `semantic` decode to exactly the masks of `instances` (overlaps to the higher
score, then the lower index), and the latched `labels` reach a late subscriber and follow every
vocabulary switch (set_vocabulary service and `vocabulary` parameter), version by version.

The node runs a scripted model (tests/ros/scripted_node.py): a box prompt's mask is its box, and its
id "<label>@<score>" sets label and score, so overlaps and unknown classes are chosen by the test.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rclpy")

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ovsam_ros.image_conversion import image_to_array  # noqa: E402
from ovsam_ros.srv import SetVocabulary  # noqa: E402
from tests.ros.node_harness import NodeUnderTest, box_prompt  # noqa: E402

pytestmark = pytest.mark.ros
CLASSES = ["red star", "blue cross", "green circle"]   # scripted_node's vocabulary
HEIGHT, WIDTH = 48, 64
STAMP = 1_000_000_000
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def node():
    # A long max_prompt_wait_s: on a busy machine no prompt may expire into an "overloaded" answer.
    harness = NodeUnderTest({"image_qos": "reliable", "frame_buffer_size": 4, "max_prompt_wait_s": 60.0},
                            module="tests.ros.scripted_node")
    try:
        harness.wait_ready()
        harness.publish_frame(np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), STAMP)
        harness.spin_for(1.0)
        yield harness
    finally:
        print(harness.close())


class LabelImages:
    """The test's subscribers on instance_ids and semantic."""

    def __init__(self, harness: NodeUnderTest) -> None:
        self.harness = harness
        self.instance_ids: list[Image] = []
        self.semantic: list[Image] = []
        reliable = QoSProfile(depth=20)
        harness.node.create_subscription(Image, "instance_ids", self.instance_ids.append, reliable)
        harness.node.create_subscription(Image, "semantic", self.semantic.append, reliable)
        harness.spin_until(lambda: harness.node.count_publishers("instance_ids") > 0 and
                           harness.node.count_publishers("semantic") > 0, "the label image topics")
        # The node publishes label images only to subscribers it has matched: prompt until both arrive.
        for attempt in range(10):
            harness.send_prompts([box_prompt(f"red star@0.5#warm-up-{attempt}", [1, 1, 5, 5], stamp_ns=STAMP)])
            harness.answers_for({f"red star@0.5#warm-up-{attempt}"})
            try:
                harness.spin_until(lambda: bool(self.instance_ids and self.semantic), "the first label images", 3.0)
                break
            except AssertionError:
                if attempt == 9:
                    raise

    def next_pair(self, after: tuple[int, int]) -> tuple[Image, Image]:
        self.harness.spin_until(lambda: len(self.instance_ids) > after[0] and len(self.semantic) > after[1],
                                "an instance_ids and a semantic image")
        return self.instance_ids[after[0]], self.semantic[after[1]]

    def counts(self) -> tuple[int, int]:
        return len(self.instance_ids), len(self.semantic)


def expected_images(instances) -> tuple[np.ndarray, np.ndarray]:
    """What the documented rule makes of an InstanceMaskArray's masks, pixel by pixel: the covering
    instance with the highest score, the lowest index among equals."""
    covers = np.zeros((len(instances), HEIGHT, WIDTH), dtype=bool)
    for index, instance in enumerate(instances):
        roi = instance.roi
        crop = image_to_array(instance.mask) > 0
        covers[index, roi.y_offset:roi.y_offset + roi.height, roi.x_offset:roi.x_offset + roi.width] = crop
    ids = np.zeros((HEIGHT, WIDTH), np.uint16)
    semantic = np.zeros((HEIGHT, WIDTH), np.uint16)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            owners = [i for i in range(len(instances)) if covers[i, y, x]]
            if owners:
                owner = max(owners, key=lambda i: (instances[i].score, -i))
                ids[y, x] = owner + 1
                class_index = instances[owner].class_index
                semantic[y, x] = class_index + 1 if class_index >= 0 else 0
    return ids, semantic


def test_label_images_decode_to_exactly_the_masks_of_instances(node):
    images = LabelImages(node)
    prompts = {  # id -> box; overlaps: a higher score, an equal score (earlier wins), an unknown class
        "red star@0.4#a": [5, 5, 30, 30],
        "blue cross@0.9#b": [20, 20, 50, 40],
        "teapot@0.6#c": [25, 2, 40, 15],
        "green circle@0.4#d": [0, 25, 12, 48],
        "red star@0.4#e": [8, 8, 14, 14],
    }
    before = images.counts()
    node.send_prompts([box_prompt(prompt_id, box, stamp_ns=STAMP) for prompt_id, box in prompts.items()])
    answers = node.answers_for(set(prompts))
    result = answers["red star@0.4#a"][1]
    assert all(array_msg is result for _, array_msg in answers.values())  # one answer for the frame
    assert [i.prompt_id for i in result.instances] == list(prompts)
    assert [i.class_index for i in result.instances] == [0, 1, -1, 2, 0]
    instance_ids, semantic = images.next_pair(before)
    for image in (instance_ids, semantic):
        assert image.encoding == "mono16" and (image.height, image.width) == (HEIGHT, WIDTH)
        assert image.header == result.header and image.header.stamp.sec == 1
    expected_ids, expected_semantic = expected_images(result.instances)
    decoded_ids, decoded_semantic = image_to_array(instance_ids), image_to_array(semantic)
    assert np.array_equal(decoded_ids, expected_ids)
    assert np.array_equal(decoded_semantic, expected_semantic)
    # The rule's cases, visibly: b (0.9) over a (0.4); a over the equal-scored, later e; c keeps its
    # pixels in instance_ids but has no class in semantic.
    assert decoded_ids[25, 25] == 2 and decoded_ids[10, 10] == 1 and decoded_ids[10, 35] == 3
    assert decoded_semantic[25, 25] == 2 and decoded_semantic[10, 10] == 1 and decoded_semantic[10, 35] == 0
    assert set(np.unique(decoded_ids)) == {0, 1, 2, 3, 4}  # e lies wholly under a


def test_a_frame_without_instances_gives_all_zero_images(node):
    images = LabelImages(node)
    before = images.counts()
    node.send_prompts([box_prompt("red star@0.5#outside", [100, 100, 120, 120], stamp_ns=STAMP)])
    reason, result = node.answers_for({"red star@0.5#outside"})["red star@0.5#outside"]
    assert isinstance(reason, str) and not result.instances
    instance_ids, semantic = images.next_pair(before)
    assert instance_ids.header == result.header
    assert not image_to_array(instance_ids).any() and not image_to_array(semantic).any()


def latest_labels(node: NodeUnderTest, after_version: int = 0) -> dict:
    """The labels a subscriber that comes now receives: the latched message, newer than `after_version`."""
    received: list[String] = []
    subscription = node.node.create_subscription(String, "labels", received.append, LATCHED)
    try:
        node.spin_until(lambda: any(json.loads(m.data)["version"] > after_version for m in received),
                        f"labels newer than version {after_version}")
    finally:
        node.node.destroy_subscription(subscription)
    return json.loads(received[-1].data)


def test_labels_reach_a_late_subscriber(node):
    node.spin_for(0.5)  # the node published its labels long before this subscriber exists
    labels = latest_labels(node)
    assert labels == {"format": "ovsam_ros/labels/1", "vocabulary": "default", "version": 1, "size": 3,
                      "classes": CLASSES}


def set_vocabulary_parameter(node: NodeUnderTest, value: str) -> None:
    parameter = Parameter(name="vocabulary", value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                                    string_value=value))
    response = node.call(SetParameters, "ovsam_node/set_parameters", SetParameters.Request(parameters=[parameter]))
    assert response.results[0].successful, response.results[0].reason


def test_a_vocabulary_switch_republishes_the_labels(node):
    before = latest_labels(node)["version"]
    switched = node.call(SetVocabulary, "set_vocabulary", SetVocabulary.Request(classes=["mug", "bowl"]))
    assert switched.success, switched.message
    labels = latest_labels(node, before)
    assert (labels["vocabulary"], labels["version"], labels["classes"]) == ("classes", before + 1, ["mug", "bowl"])
    refused = node.call(SetVocabulary, "set_vocabulary", SetVocabulary.Request(name="not-allowed.txt"))
    assert not refused.success
    set_vocabulary_parameter(node, "coco")   # the scripted model's vocabulary is then one class named "coco"
    labels = latest_labels(node, before + 1)
    # The refused switch published nothing: the parameter's switch is the very next version.
    assert (labels["vocabulary"], labels["version"], labels["classes"]) == ("coco", before + 2, ["coco"])
    restored = node.call(SetVocabulary, "set_vocabulary", SetVocabulary.Request(classes=CLASSES))
    assert restored.success, restored.message
    assert latest_labels(node, before + 2)["classes"] == CLASSES

