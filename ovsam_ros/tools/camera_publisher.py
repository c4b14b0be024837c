"""`python -m ovsam_ros.tools.camera_publisher --source synthetic|video|bag ...`: feeds the node without a camera.

Publishes `image` (rgb8) and `camera_info` at --rate Hz with fresh stamps, from the synthetic moving
world (the demo's camera), a video file (OpenCV), or a recorded ROS 2 bag (rosbags, no ROS install).
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterator, Sequence

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..image_conversion import array_to_image
from .image_sources import bag_frames, synthetic_frames, video_frames


def pinhole_info(width: int, height: int, frame_id: str, fov_scale: float = 1.0) -> CameraInfo:
    """A plausible calibration for sources that have none: focal length = image width * fov_scale."""
    focal = float(width) * fov_scale
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [focal, 0.0, width / 2.0, 0.0, focal, height / 2.0, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [focal, 0.0, width / 2.0, 0.0, 0.0, focal, height / 2.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.frame_id = frame_id
    return info


class CameraPublisher(Node):
    def __init__(self, frames: Iterator[tuple[np.ndarray, object]], rate_hz: float, frame_id: str,
                 reliable: bool, max_frames: int = 0) -> None:
        super().__init__("ovsam_camera")
        qos = QoSProfile(depth=5) if reliable else qos_profile_sensor_data
        self.image_pub = self.create_publisher(Image, "image", qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self.frames, self.frame_id, self.max_frames = frames, frame_id, max_frames
        self.published = 0
        self.create_timer(1.0 / rate_hz, self._publish)

    def _publish(self) -> None:
        try:
            rgb, _ = next(self.frames)
        except StopIteration:
            self.get_logger().info(f"source finished after {self.published} frames")
            raise SystemExit(0)
        stamp = self.get_clock().now().to_msg()
        image = array_to_image(rgb, "rgb8")
        image.header.stamp, image.header.frame_id = stamp, self.frame_id
        info = pinhole_info(rgb.shape[1], rgb.shape[0], self.frame_id)
        info.header.stamp = stamp
        self.image_pub.publish(image)
        self.info_pub.publish(info)
        self.published += 1
        if self.max_frames and self.published >= self.max_frames:
            raise SystemExit(0)


def build_source(args: argparse.Namespace) -> Iterator[tuple[np.ndarray, object]]:
    if args.source == "synthetic":
        return synthetic_frames(seed=args.seed, size=args.size)
    if args.source == "video":
        return video_frames(args.path, loop=args.loop)
    return bag_frames(args.path, args.topic)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camera_publisher", description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("synthetic", "video", "bag"), default="synthetic")
    parser.add_argument("--path", help="video file or bag directory")
    parser.add_argument("--topic", default="/camera/image_raw", help="image topic inside the bag")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--loop", action="store_true", help="restart the video at its end")
    parser.add_argument("--frame-id", default="camera_color_optical_frame")
    parser.add_argument("--reliable", action="store_true", help="reliable QoS instead of sensor-data")
    parser.add_argument("--max-frames", type=int, default=0)
    args, ros_args = parser.parse_known_args(argv)
    if args.source in ("video", "bag") and not args.path:
        parser.error(f"--source {args.source} needs --path")
    try:
        frames = build_source(args)
    except (OSError, ValueError) as error:
        print(f"camera_publisher: {error}", file=sys.stderr)
        return 2
    rclpy.init(args=ros_args)
    node = CameraPublisher(frames, args.rate, args.frame_id, args.reliable, args.max_frames)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    except (OSError, ValueError) as error:
        print(f"camera_publisher: {error}", file=sys.stderr)
        return 2
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
