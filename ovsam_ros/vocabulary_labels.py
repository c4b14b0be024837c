"""The active vocabulary as the `labels` topic's messages: a std_msgs/String holding one JSON document
(always), and vision_msgs/LabelInfo where vision_msgs is installed.

The JSON document (`LABELS_FORMAT`):

    {"format": "ovsam_ros/labels/1", "vocabulary": "coco", "version": 2, "size": 80,
     "classes": ["person", "bicycle", ...]}

`classes[i]` is the class with class_index i (InstanceMask.class_index); in the `semantic` image it
is the pixel value i + 1, and 0 is "no instance". `vocabulary` names where the classes came from:
"lvis", "coco", the file's path, "classes" for a list given in a request, or "default" for the
model's own. `version` counts the vocabularies this node has published since it configured,
starting at 1, so a consumer can tell a switch from a repeat. In LabelInfo, class_map holds
class_id = class_index + 1 (the semantic pixel value) with its name, and threshold the node's
score_threshold.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from std_msgs.msg import String

try:  # optional: only where vision_msgs is installed (not on PyPI)
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:  # pragma: no cover - exercised where vision_msgs exists
    LabelInfo = VisionClass = None

LABELS_FORMAT = "ovsam_ros/labels/1"
# LabelInfo's class_id is a uint16, and 0 stays "no instance" as in the semantic image.
LARGEST_CLASS_ID = 65535


@dataclass(frozen=True)
class VocabularyLabels:
    """The class names of one active vocabulary, what they came from, and its version on this node."""

    vocabulary: str
    version: int
    classes: tuple[str, ...]


def vocabulary_name(spec: str | Sequence[str] | None) -> str:
    """What a vocabulary spec (as the engine's set_vocabulary takes it) is called in the labels."""
    if spec is None or spec in ("", "default"):
        return "default"
    if isinstance(spec, str):
        return spec
    return "classes"


def labels_json(labels: VocabularyLabels) -> String:
    """The plain form: a std_msgs/String with one JSON document (see the module docstring)."""
    document = {"format": LABELS_FORMAT, "vocabulary": labels.vocabulary, "version": labels.version,
                "size": len(labels.classes), "classes": list(labels.classes)}
    return String(data=json.dumps(document, ensure_ascii=False))


def label_info(labels: VocabularyLabels, header: Any, threshold: float) -> Any:
    """vision_msgs/LabelInfo (class_id = class_index + 1, the semantic pixel value); None where
    vision_msgs is not installed. Classes whose id would not fit its uint16 are left out."""
    if LabelInfo is None:
        return None
    msg = LabelInfo(header=header, threshold=float(threshold))
    msg.class_map = [VisionClass(class_id=index + 1, class_name=name)
                     for index, name in enumerate(labels.classes[:LARGEST_CLASS_ID])]
    return msg
