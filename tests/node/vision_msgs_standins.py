"""Duck-typed stand-ins for the vision_msgs 4.x messages the node publishes (ROS 2 Humble and later),
for machines without vision_msgs (it is not on PyPI): the same field names and nesting, so the
conversions under test write exactly the attribute paths the real messages have. `use_vision_msgs`
puts the real types in place where vision_msgs is installed, the stand-ins elsewhere."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from std_msgs.msg import Header


@dataclass
class VisionClass:
    class_id: int = 0        # uint16
    class_name: str = ""


@dataclass
class LabelInfo:
    header: Header = field(default_factory=Header)
    class_map: list[VisionClass] = field(default_factory=list)
    threshold: float = 0.0   # float32


@dataclass
class Point2D:
    x: float = 0.0
    y: float = 0.0


@dataclass
class Pose2D:
    position: Point2D = field(default_factory=Point2D)
    theta: float = 0.0


@dataclass
class BoundingBox2D:
    center: Pose2D = field(default_factory=Pose2D)
    size_x: float = 0.0
    size_y: float = 0.0


@dataclass
class ObjectHypothesis:
    class_id: str = ""
    score: float = 0.0


@dataclass
class ObjectHypothesisWithPose:
    hypothesis: ObjectHypothesis = field(default_factory=ObjectHypothesis)
    pose: Any = None         # geometry_msgs/PoseWithCovariance; the 2D detections leave it unset


@dataclass
class Detection2D:
    header: Header = field(default_factory=Header)
    results: list[ObjectHypothesisWithPose] = field(default_factory=list)
    bbox: BoundingBox2D = field(default_factory=BoundingBox2D)
    id: str = ""


@dataclass
class Detection2DArray:
    header: Header = field(default_factory=Header)
    detections: list[Detection2D] = field(default_factory=list)


def use_vision_msgs(monkeypatch: Any, module: Any, names: tuple[str, ...]) -> bool:
    """Give `module` the vision_msgs types `names`: the real ones where installed (returns True), else
    these stand-ins (returns False)."""
    try:
        import vision_msgs.msg as real
    except ImportError:
        real = None
    source = real if real is not None else globals()
    for name in names:
        monkeypatch.setattr(module, name, getattr(real, name) if real is not None else source[name])
    return real is not None
