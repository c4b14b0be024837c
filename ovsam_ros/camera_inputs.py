"""What the node last received from the camera besides images: its calibration, the colour frame id
and the depth images. The input handlers write it; the outputs and the Segment service read it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .depth_fusion import DepthFusion


@dataclass
class CameraInputs:
    depth: DepthFusion           # depth images by stamp, for 3D instances (an optional input)
    info: Any = None             # sensor_msgs/CameraInfo, None until one arrives
    image_frame_id: str = ""     # of the latest colour image: the camera frame when camera_info has none
    image_size: tuple[int, int] | None = None  # (width, height) of the latest colour image, to check camera_info
