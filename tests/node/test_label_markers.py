"""RViz label markers sit on the ray through each mask's box centre, through the camera's lens, and
only with a calibration for the answered image's size."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from ovsam_model.instances import InstancePrediction
from ovsam_ros.camera_geometry import project_to_pixel
from ovsam_ros.engine import Answer, InstanceResult
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.label_markers import label_markers

WIDTH, HEIGHT = 640, 480


def answer() -> Answer:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[10:30, 20:60] = True  # box (20, 10, 60, 30): columns 20-59, rows 10-29, middle (39.5, 19.5), near a corner
    prediction = InstancePrediction(prompt_id="p", mask=mask, mask_score=0.9, box=(20, 10, 60, 30), class_index=0,
                                    label="mug", score=0.8)
    return Answer(frame=Frame(stamp_ns=1, rgb=np.zeros((HEIGHT, WIDTH, 3), np.uint8)),
                  instances=[InstanceResult(prediction)])


def camera_info(width: int = WIDTH, height: int = HEIGHT) -> SimpleNamespace:
    return SimpleNamespace(k=[525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0], width=width, height=height,
                           distortion_model="plumb_bob", d=[-0.28, 0.07, 0.001, -0.0005, 0.0])


def test_a_label_projects_back_onto_its_boxs_middle_pixel() -> None:
    info = camera_info()
    markers = label_markers(answer(), info, Header(frame_id="camera"), label_depth=2.0)
    clear, label = markers.markers
    assert clear.action == Marker.DELETEALL and label.text == "mug 0.80"
    position = label.pose.position
    assert position.z == pytest.approx(2.0)
    assert project_to_pixel(position.x, position.y, position.z, info) == pytest.approx((39.5, 19.5), abs=0.01)


def test_no_labels_with_a_calibration_for_another_image_size() -> None:
    assert label_markers(answer(), camera_info(1280, 720), Header(frame_id="camera")).markers == []
    assert len(label_markers(answer(), camera_info(0, 0), Header(frame_id="camera")).markers) == 2  # size unsaid
