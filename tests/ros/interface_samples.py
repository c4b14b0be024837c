"""Messages with known field values, built the same way by the publishing peer and the checks."""
from __future__ import annotations

from geometry_msgs.msg import Point
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from ovsam_ros.msg import InstanceMask, InstanceMaskArray, Prompt, PromptArray

STAMP_SEC, STAMP_NANOSEC = 1_700_000_000, 250_000_000


def header() -> Header:
    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec, h.stamp.nanosec = STAMP_SEC, STAMP_NANOSEC
    return h


def prompt() -> Prompt:
    return Prompt(
        header=header(),
        id="click-7",
        points=[Point(x=120.5, y=64.0, z=0.0), Point(x=10.0, y=20.0, z=0.0)],
        point_labels=[1, 0],
        box=[100.0, 50.0, 180.0, 90.0],
        track=True,
    )


def prompt_array() -> PromptArray:
    box_only = Prompt(header=header(), id="box-1", box=[1.0, 2.0, 3.0, 4.0])
    return PromptArray(header=header(), prompts=[prompt(), box_only])


def instance_mask() -> InstanceMask:
    mask = Image(header=header(), height=2, width=3, encoding="mono8", is_bigendian=0, step=3,
                 data=bytes([0, 255, 255, 255, 255, 0]))
    return InstanceMask(
        id=42,
        prompt_id="click-7",
        label="red star",
        class_index=3,
        score=0.875,
        mask_score=0.5,
        top_labels=["red star", "red cross"],
        top_scores=[0.875, 0.125],
        roi=RegionOfInterest(x_offset=100, y_offset=50, height=2, width=3, do_rectify=False),
        mask=mask,
    )


def instance_mask_array() -> InstanceMaskArray:
    return InstanceMaskArray(
        header=header(),
        image_height=480,
        image_width=640,
        instances=[instance_mask()],
        failed_prompt_ids=["late-1"],
        failure_reasons=["frame with stamp 1.0 is no longer buffered"],
    )


TOPICS = {
    "prompt": (Prompt, prompt),
    "prompts": (PromptArray, prompt_array),
    "instance": (InstanceMask, instance_mask),
    "instances": (InstanceMaskArray, instance_mask_array),
}
