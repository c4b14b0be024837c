"""The camera publisher's sources: the moving synthetic world, a video file, a ROS 2 bag (rosbags)."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from ovsam_model.synthetic.motion import MovingWorld
from ovsam_ros.tools.image_sources import bag_frames, synthetic_frames, video_frames


def test_moving_world_moves_and_knows_its_truth():
    world = MovingWorld(seed=1, size=128, num_objects=3, speed=2.0)
    first, later = world.render(0), world.render(10)
    assert first.image.shape == (128, 128, 3) and first.image.dtype == np.uint8
    assert set(np.unique(first.instance_map)) <= {0, 1, 2, 3}
    assert not np.array_equal(first.instance_map, later.instance_map)
    again = MovingWorld(seed=1, size=128, num_objects=3, speed=2.0).render(10)
    assert np.array_equal(again.image, later.image)  # deterministic per seed and frame
    for frame in range(0, 400, 37):  # objects bounce off the borders and stay in the picture
        for obj in world.objects:
            x, y = world._position(obj, frame)
            assert obj.radius - 1e-6 <= x <= 128 - obj.radius + 1e-6
            assert obj.radius - 1e-6 <= y <= 128 - obj.radius + 1e-6


def test_synthetic_frames_are_a_stream():
    frames = list(itertools.islice(synthetic_frames(seed=0, size=64), 3))
    assert len(frames) == 3 and frames[0][1] is not None


def test_video_file(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for value in (40, 120, 200):
        writer.write(np.full((32, 48, 3), (value, 0, 255 - value), np.uint8))  # BGR
    writer.release()
    frames = [rgb for rgb, _ in video_frames(path)]
    assert len(frames) == 3 and frames[0].shape == (32, 48, 3)
    assert frames[0][..., 0].mean() > 200 and frames[0][..., 2].mean() < 60  # BGR -> RGB
    with pytest.raises(FileNotFoundError):
        next(video_frames(tmp_path / "missing.mp4"))


def test_ros2_bag(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    Image = typestore.types["sensor_msgs/msg/Image"]
    Header = typestore.types["std_msgs/msg/Header"]
    Time = typestore.types["builtin_interfaces/msg/Time"]
    bag = tmp_path / "bag"
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    with Writer(bag, version=8) as writer:
        connection = writer.add_connection("/camera/image_raw", Image.__msgtype__, typestore=typestore)
        for i in range(2):
            msg = Image(header=Header(stamp=Time(sec=i, nanosec=0), frame_id="cam"), height=6, width=8,
                        encoding="rgb8", is_bigendian=0, step=24, data=rgb.reshape(-1).copy())
            writer.write(connection, i * 1000, typestore.serialize_cdr(msg, Image.__msgtype__))
    frames = [frame for frame, _ in bag_frames(bag, "/camera/image_raw")]
    assert len(frames) == 2 and np.array_equal(frames[0], rgb)
    with pytest.raises(ValueError, match="no topic /other"):
        next(bag_frames(bag, "/other"))
