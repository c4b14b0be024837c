"""Frame sources for the camera publisher: the synthetic moving world, a video file, a ROS 2 bag.

Each source yields (rgb uint8 HxWx3, truth or None); ROS-free so that it is testable alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np


def synthetic_frames(seed: int = 0, size: int = 256, num_objects: int = 4, speed: float = 1.5) -> Iterator[tuple[np.ndarray, object]]:
    from ovsam_model.synthetic.motion import MovingWorld

    world = MovingWorld(seed=seed, size=size, num_objects=num_objects, speed=speed)
    frame = 0
    while True:
        scene = world.render(frame)
        yield scene.image, scene
        frame += 1


def video_frames(path: str | Path, loop: bool = False) -> Iterator[tuple[np.ndarray, None]]:
    import cv2

    if not Path(path).is_file():
        raise FileNotFoundError(f"video file {path} does not exist")
    while True:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"OpenCV cannot open {path} as a video")
        count = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            count += 1
            yield np.ascontiguousarray(bgr[..., ::-1]), None
        capture.release()
        if not loop or count == 0:
            return


def bag_frames(path: str | Path, topic: str) -> Iterator[tuple[np.ndarray, None]]:
    """Images (sensor_msgs/Image or CompressedImage) from a ROS 2 bag (sqlite3 or MCAP), read with rosbags."""
    from rosbags.highlevel import AnyReader

    from ..image_conversion import compressed_to_rgb, image_to_rgb

    with AnyReader([Path(path)]) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            topics = sorted({c.topic for c in reader.connections})
            raise ValueError(f"bag {path} has no topic {topic}; it has: {', '.join(topics)}")
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.msgtype.endswith("CompressedImage"):
                yield compressed_to_rgb(msg), None
            else:
                yield np.array(image_to_rgb(msg)), None
