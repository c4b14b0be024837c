"""The labels (JSON String, LabelInfo) and the 2D detections built from one frame's instances.

vision_msgs is not installed here: LabelInfo and Detection2DArray are checked with the duck-typed
stand-ins of tests/node/vision_msgs_standins.py (the real types where vision_msgs is installed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from std_msgs.msg import Header

from ovsam_model.instances import InstancePrediction
from ovsam_ros import detection2d_conversion, vocabulary_labels
from ovsam_ros.detection2d_conversion import detections_2d
from ovsam_ros.engine import InstanceResult
from ovsam_ros.vocabulary_labels import LABELS_FORMAT, VocabularyLabels, label_info, labels_json, vocabulary_name
from tests.node.vision_msgs_standins import use_vision_msgs

DETECTION_TYPES = ("Detection2D", "Detection2DArray", "ObjectHypothesisWithPose")
LABELS = VocabularyLabels(vocabulary="kitchen.txt", version=3, classes=("mug", "bowl", "spoon"))


def header() -> Header:
    msg = Header(frame_id="camera")
    msg.stamp.sec, msg.stamp.nanosec = 12, 345
    return msg


def result(box: tuple[int, int, int, int], label: str, score: float, track_id: int = 0) -> InstanceResult:
    mask = np.zeros((20, 30), dtype=bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    return InstanceResult(InstancePrediction(prompt_id="p", mask=mask, mask_score=0.9, box=box, class_index=1,
                                             label=label, score=score), track_id=track_id)


def test_the_json_labels_name_the_vocabulary_its_version_and_classes():
    document = json.loads(labels_json(LABELS).data)
    assert document == {"format": LABELS_FORMAT, "vocabulary": "kitchen.txt", "version": 3, "size": 3,
                        "classes": ["mug", "bowl", "spoon"]}


def test_the_json_labels_keep_names_as_they_are():
    labels = VocabularyLabels(vocabulary="classes", version=1, classes=("café cup", 'a "quoted" name', ""))
    assert json.loads(labels_json(labels).data)["classes"] == ["café cup", 'a "quoted" name', ""]


@pytest.mark.parametrize("spec, name", [(None, "default"), ("", "default"), ("default", "default"),
                                        ("coco", "coco"), ("/srv/vocab/kitchen.txt", "/srv/vocab/kitchen.txt"),
                                        (["mug", "bowl"], "classes")])
def test_vocabulary_names(spec, name):
    assert vocabulary_name(spec) == name


def test_label_info_maps_semantic_pixel_values_to_names(monkeypatch):
    use_vision_msgs(monkeypatch, vocabulary_labels, ("LabelInfo", "VisionClass"))
    msg = label_info(LABELS, header(), threshold=0.25)
    assert msg.header.frame_id == "camera" and msg.header.stamp.nanosec == 345
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(1, "mug"), (2, "bowl"), (3, "spoon")]
    assert msg.threshold == pytest.approx(0.25)


def test_without_vision_msgs_there_is_no_label_info_or_detections(monkeypatch):
    monkeypatch.setattr(vocabulary_labels, "LabelInfo", None)
    monkeypatch.setattr(detection2d_conversion, "Detection2DArray", None)
    assert label_info(LABELS, header(), 0.0) is None
    assert detections_2d([result((1, 2, 5, 6), "mug", 0.5)], header()) is None


def test_a_track_and_an_untracked_instance_never_share_a_detection_id(monkeypatch):
    """The first track of a node is 1 and the second instance of a frame has index 1."""
    use_vision_msgs(monkeypatch, detection2d_conversion, DETECTION_TYPES)
    instances = [result((0, 0, 30, 20), "bowl", 0.5, track_id=1), result((2, 3, 12, 9), "mug", 0.75)]
    ids = [d.id for d in detections_2d(instances, header()).detections]
    assert len(set(ids)) == 2 and ids[0] == "1"


def test_one_detection_per_instance_with_its_index_or_track_id_label_score_and_box(monkeypatch):
    use_vision_msgs(monkeypatch, detection2d_conversion, DETECTION_TYPES)
    instances = [result((2, 3, 12, 9), "mug", 0.75), result((0, 0, 30, 20), "bowl", 0.5, track_id=7),
                 result((20, 10, 21, 11), "spoon", 0.125)]
    msg = detections_2d(instances, header())
    assert msg.header.frame_id == "camera" and len(msg.detections) == 3
    assert [d.id for d in msg.detections] == ["index-0", "7", "index-2"]
    first = msg.detections[0]
    assert first.header.stamp.sec == 12
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (7.0, 6.0)
    assert (first.bbox.size_x, first.bbox.size_y) == (10.0, 6.0)
    assert [(d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) for d in msg.detections] == [
        ("mug", 0.75), ("bowl", 0.5), ("spoon", 0.125)]
    assert all(len(d.results) == 1 for d in msg.detections)


def test_an_empty_frame_has_an_empty_detection_array(monkeypatch):
    use_vision_msgs(monkeypatch, detection2d_conversion, DETECTION_TYPES)
    msg = detections_2d([], header())
    assert msg.detections == [] and msg.header.frame_id == "camera"
