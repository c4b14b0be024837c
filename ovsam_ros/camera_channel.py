"""One camera of the node: its name and topic prefix, what it last received besides images, its text
query, and (once the node is configured) its engine (frame buffer, tracks) and its outputs.

A node without the `cameras` parameter has one camera named "" whose topics carry no prefix (today's
names); with `cameras: [front, rear]` each camera's topics are `front/...` and `rear/...`. Every
camera shares the one model and the one inference thread (worker.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .camera_inputs import CameraInputs
from .node_health import HealthRecord

if TYPE_CHECKING:  # only for the annotations: the engine and outputs modules need not load first
    from .engine import PerceptionEngine
    from .node_outputs import AnswerOutputs


@dataclass
class CameraChannel:
    name: str                                   # "" = the single camera of a node without `cameras`
    inputs: CameraInputs
    health: HealthRecord
    text_queries: tuple[str, ...] = ()
    last_text_submit: float = 0.0
    engine: PerceptionEngine | None = field(default=None, repr=False)  # from configure to cleanup
    outputs: AnswerOutputs | None = field(default=None, repr=False)

    def topic(self, name: str) -> str:
        """This camera's name for a relative topic: `name` for the single camera, else `camera/name`."""
        return f"{self.name}/{name}" if self.name else name

    @property
    def source(self) -> str:
        """Its frames' source, hence their feature-cache keys: two cameras' frames with one stamp are two images."""
        return f"camera:{self.name}" if self.name else "camera"
