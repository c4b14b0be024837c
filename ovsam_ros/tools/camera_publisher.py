"""`python -m ovsam_ros.tools.camera_publisher --source synthetic|still-scene|video|bag ...`: feeds the
node without a camera.

Publishes `image` (rgb8) and `camera_info` at --rate Hz with fresh stamps, from the synthetic moving
world (the demo's camera), a still scene (the node benchmark's), a video file (OpenCV), or a
recorded ROS 2 bag (rosbags, no ROS install). `CameraPublisher` is the one camera of the tools: the
demo streams its world through it, the soak publishes its frames with it, the benchmark runs this
command as its camera process.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..image_conversion import array_to_image
from .image_sources import bag_frames, still_scene_frames, synthetic_frames, video_frames

CAMERA_FRAME = "camera_color_optical_frame"


def pinhole_info(width: int, height: int, frame_id: str, fov_scale: float = 1.0) -> CameraInfo:
    """A plausible calibration for sources that have none: focal length = image width * fov_scale."""
    focal = float(width) * fov_scale
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    # The middle of the image in pixel-centre coordinates (pixel u spans u - 0.5 to u + 0.5), as K counts.
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    info.k = [focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.frame_id = frame_id
    return info


class SourceFinished(Exception):
    """The frame source has no more frames (or --max-frames were published)."""


class CameraPublisher:
    """`image` and (optionally) `camera_info` on a node it is given: one frame at a time with
    publish(), or a stream of frames at a rate with stream()."""

    def __init__(self, node: Any, *, reliable: bool = True, frame_id: str = CAMERA_FRAME,
                 camera_info: bool = True, camera: str = "") -> None:
        """`camera`: one of a multi-camera node's cameras (topics `camera/image`, ...); "" = unprefixed."""
        qos = QoSProfile(depth=5) if reliable else qos_profile_sensor_data
        self.node, self.frame_id = node, frame_id
        prefix = f"{camera}/" if camera else ""
        self.image_pub = node.create_publisher(Image, f"{prefix}image", qos)
        self.info_pub = node.create_publisher(CameraInfo, f"{prefix}camera_info", qos) if camera_info else None
        self.published = 0

    def publish(self, rgb: np.ndarray, stamp_ns: int | None = None) -> int:
        """Publish one frame with this stamp (None: now, by the node's clock); returns the stamp."""
        if stamp_ns is None:
            stamp_ns = self.node.get_clock().now().nanoseconds
        image = array_to_image(rgb, "rgb8")
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        image.header.frame_id = self.frame_id
        self.image_pub.publish(image)
        if self.info_pub is not None:
            info = pinhole_info(rgb.shape[1], rgb.shape[0], self.frame_id)
            info.header.stamp = image.header.stamp
            self.info_pub.publish(info)
        self.published += 1
        return stamp_ns

    def stream(self, frames: Iterator[tuple[np.ndarray, object]], rate_hz: float,
               on_published: Callable[[int, object], None] | None = None, max_frames: int = 0) -> None:
        """Publish `frames` at `rate_hz` from a timer of the node; `on_published(stamp_ns, truth)`
        after each. Raises SourceFinished from the executor's spin when the source ends."""

        def publish_next() -> None:
            try:
                rgb, truth = next(frames)
            except StopIteration:
                raise SourceFinished(f"source finished after {self.published} frames") from None
            stamp_ns = self.publish(rgb)
            if on_published is not None:
                on_published(stamp_ns, truth)
            if max_frames and self.published >= max_frames:
                raise SourceFinished(f"published {self.published} frames (--max-frames)")

        self.node.create_timer(1.0 / rate_hz, publish_next)


def build_source(args: argparse.Namespace) -> Iterator[tuple[np.ndarray, object]]:
    if args.source == "synthetic":
        return synthetic_frames(seed=args.seed, size=args.size)
    if args.source == "still-scene":
        return still_scene_frames(seed=args.seed, width=args.width or args.size, height=args.height or args.size)
    if args.source == "video":
        return video_frames(args.path, loop=args.loop)
    return bag_frames(args.path, args.topic)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camera_publisher", description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("synthetic", "still-scene", "video", "bag"), default="synthetic")
    parser.add_argument("--path", help="video file or bag directory")
    parser.add_argument("--topic", default="/camera/image_raw", help="image topic inside the bag")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="side of the synthetic frames")
    parser.add_argument("--width", type=int, default=0, help="still-scene width (default --size)")
    parser.add_argument("--height", type=int, default=0, help="still-scene height (default --size)")
    parser.add_argument("--loop", action="store_true", help="restart the video at its end")
    parser.add_argument("--frame-id", default=CAMERA_FRAME)
    parser.add_argument("--reliable", action="store_true", help="reliable QoS instead of sensor-data")
    parser.add_argument("--no-camera-info", action="store_true", help="publish only the images")
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
    node = rclpy.create_node("ovsam_camera")
    camera = CameraPublisher(node, reliable=args.reliable, frame_id=args.frame_id, camera_info=not args.no_camera_info)
    camera.stream(frames, args.rate, max_frames=args.max_frames)
    print("camera ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SourceFinished as finished:
        node.get_logger().info(str(finished))
    except (OSError, ValueError) as error:
        print(f"camera_publisher: {error}", file=sys.stderr)
        return 2
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
