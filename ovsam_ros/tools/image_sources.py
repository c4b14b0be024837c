"""Frame sources for the camera publisher: the synthetic moving world, a still scene (the node
benchmark's), a video file, a ROS 2 bag.

Each source yields (rgb uint8 HxWx3, truth or None); ROS-free so that it is testable alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ovsam_model.mask_box import tight_box


def synthetic_frames(seed: int = 0, size: int = 256, num_objects: int = 4,
                     speed: float = 1.5) -> Iterator[tuple[np.ndarray, object]]:
    from ovsam_model.synthetic.motion import MovingWorld

    return world_frames(MovingWorld(seed=seed, size=size, num_objects=num_objects, speed=speed))


def world_frames(world: Any) -> Iterator[tuple[np.ndarray, object]]:
    """A MovingWorld's frames, each with its scene (the truth: instance map and labels)."""
    frame = 0
    while True:
        scene = world.render(frame)
        yield scene.image, scene
        frame += 1


def still_scene(seed: int, width: int, height: int, count: int) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """`count` pre-rendered frames of a still shapes world stretched to width x height, and the box
    (x0, y0, x1, y1) of its largest object in those pixels (the node benchmark's scene)."""
    import cv2

    from ovsam_model.synthetic.motion import MovingWorld

    side = max(width, height)
    world = MovingWorld(seed=seed, size=side, num_objects=4, speed=0.0)
    frames, box = [], None
    for index in range(count):
        scene = world.render(index)
        if box is None:
            areas = [(scene.instance_map == i + 1).sum() for i in range(len(scene.labels))]
            x0, y0, x1, y1 = tight_box(scene.instance_map == int(np.argmax(areas)) + 1)
            sx, sy = width / side, height / side
            box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        frames.append(np.ascontiguousarray(cv2.resize(scene.image, (width, height), interpolation=cv2.INTER_AREA)))
    return frames, box


def still_scene_frames(seed: int, width: int, height: int, count: int = 30) -> Iterator[tuple[np.ndarray, None]]:
    """still_scene's frames, cycled for ever."""
    frames, _ = still_scene(seed, width, height, count)
    index = 0
    while True:
        yield frames[index % len(frames)], None
        index += 1


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
