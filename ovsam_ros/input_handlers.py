"""The node's input handlers: each converts one incoming message and hands the work to the inference
thread of its camera (`channel`; None: the first camera, as the plain subscriptions bind it).

NodeWiring (node_wiring.py) subscribes these methods; every error in one is reported (log +
diagnostics, and per prompt in failed_prompt_ids) and never escapes (`guarded`).
"""
from __future__ import annotations

import functools
import itertools
import time
from typing import TYPE_CHECKING, Any, Callable

from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from ovsam_model.text_query import parse_text_query
from ovsam_ros.msg import PromptArray

from .camera_channel import CameraChannel
from .camera_geometry import ProjectionError
from .clicked_point import ClickedPointProjector
from .depth_image import DepthError, depth_from_msg
from .engine import Answer
from .frame_buffer import Frame, stamp_to_ns
from .image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb
from .node_health import NodeHealth
from .prompt_conversion import (
    ConvertedPrompts,
    PromptConversionError,
    PromptFailure,
    click_request,
    requests_from_detections,
    requests_from_prompt_msgs,
)
from .settings import NodeSettings

if TYPE_CHECKING:  # only for the annotations: node_wiring imports this module
    from .node_wiring import Pipeline


def guarded(method: Callable) -> Callable:
    """No exception escapes a callback: it is logged and counted, and the node keeps running."""

    @functools.wraps(method)
    def wrapper(self: "InputHandlers", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001
            self.health.count("callback_errors")
            self.health.problem(f"{method.__name__}: {type(error).__name__}: {error}")
            return None

    return wrapper


class InputHandlers:
    """The subscription callbacks of NodeWiring, which provides the attributes below."""

    channels: list[CameraChannel]
    pipeline: Pipeline | None
    settings: NodeSettings
    health: NodeHealth
    logger: Any
    _clicked_points: ClickedPointProjector
    _click_ids: itertools.count

    @guarded
    def _on_image(self, msg: Image | CompressedImage, channel: CameraChannel | None = None) -> None:
        channel = channel or self.channels[0]
        pipeline = self.pipeline
        if pipeline is None or channel.engine is None:
            return
        channel.health.count("images_received")
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ImageConversionError as error:
            channel.health.count("images_rejected")
            channel.health.problem(f"image rejected: {error}")
            return
        now = time.monotonic()
        channel.health.last_image_time = now
        channel.inputs.image_frame_id = msg.header.frame_id
        channel.inputs.image_size = (int(rgb.shape[1]), int(rgb.shape[0]))
        frame = Frame(stamp_ns=stamp_to_ns(msg.header.stamp), rgb=rgb, header=msg.header, received_at=now,
                      source=channel.source)
        pipeline.worker.add_frame(frame, channel.name)  # wakes prompts that wait for this frame
        queries: tuple[str, ...] = ()
        if channel.text_queries and now - channel.last_text_submit >= 1.0 / self.settings.text_rate_hz:
            queries, channel.last_text_submit = channel.text_queries, now
        if queries or channel.engine.tracking:
            pipeline.worker.submit_frame(frame, queries, channel.name)

    @guarded
    def _on_camera_info(self, msg: CameraInfo, channel: CameraChannel | None = None) -> None:
        channel = channel or self.channels[0]
        channel.health.count("camera_info_received")
        channel.inputs.info = msg

    @guarded
    def _on_depth(self, msg: Image, channel: CameraChannel | None = None) -> None:
        channel = channel or self.channels[0]
        channel.health.count("depth_received")
        try:
            channel.inputs.depth.add(depth_from_msg(msg))
        except (DepthError, ImageConversionError) as error:
            channel.health.count("depth_rejected")
            channel.health.problem(f"depth rejected: {error}")

    @guarded
    def _on_prompts(self, msg: PromptArray, channel: CameraChannel | None = None) -> None:
        channel = channel or self.channels[0]
        pipeline = self.pipeline
        if pipeline is None:
            return
        channel.health.count("prompt_messages")
        array_stamp = stamp_to_ns(msg.header.stamp)
        # A prompt without a stamp of its own refers to the array's.
        converted = requests_from_prompt_msgs(msg.prompts,
                                              lambda prompt: stamp_to_ns(prompt.header.stamp) or array_stamp)
        self._submit(pipeline, channel, converted, msg.header)

    @staticmethod
    def _submit(pipeline: Pipeline, channel: CameraChannel, converted: ConvertedPrompts, header: Any = None) -> None:
        """Prompts that failed conversion are answered at once (with the message's header) on the
        camera's outputs, the rest queued on its frames."""
        if converted.failures and channel.outputs is not None:
            channel.outputs.publish_answer(Answer(frame=None, failures=converted.failures), header=header)
        if converted.requests:
            pipeline.worker.submit_prompts(converted.requests, channel.name)

    @staticmethod
    def _publish_failure(channel: CameraChannel, failure: PromptFailure) -> None:
        if channel.outputs is not None:
            channel.outputs.publish_answer(Answer(frame=None, failures=[failure]))

    @guarded
    def _on_image_click(self, msg: Point, channel: CameraChannel | None = None) -> None:
        channel = channel or self.channels[0]
        pipeline = self.pipeline
        if pipeline is None:
            return
        prompt_id = f"image_click-{next(self._click_ids)}"
        try:
            pipeline.worker.submit_prompts([click_request(prompt_id, msg.x, msg.y)], channel.name)
        except PromptConversionError as error:
            self._publish_failure(channel, PromptFailure(prompt_id, str(error)))

    @guarded
    def _on_clicked_point(self, msg: PointStamped, channel: CameraChannel | None = None) -> None:
        channel = channel or self.channels[0]
        pipeline = self.pipeline
        if pipeline is None:
            return
        prompt_id = f"clicked_point-{next(self._click_ids)}"
        try:
            u, v = self._clicked_points.to_pixel(msg, channel.inputs.info, channel.inputs.image_frame_id,
                                                 channel.inputs.image_size)
            request = click_request(prompt_id, u, v)
        except (ProjectionError, PromptConversionError) as error:
            channel.health.problem(f"clicked_point rejected: {error}")
            self._publish_failure(channel, PromptFailure(prompt_id, str(error)))
            return
        pipeline.worker.submit_prompts([request], channel.name)

    @guarded
    def _on_detections(self, msg: Any, channel: CameraChannel | None = None) -> None:
        channel = channel or self.channels[0]
        pipeline = self.pipeline
        if pipeline is None:
            return
        self._submit(pipeline, channel,
                     requests_from_detections(msg.detections, stamp_to_ns(msg.header.stamp), "detection"), msg.header)

    @guarded
    def _on_text_query(self, msg: String, channel: CameraChannel | None = None) -> None:
        channel = channel or self.channels[0]
        try:
            channel.text_queries = tuple(parse_text_query(msg.data, allow_empty=True))
        except ValueError as error:
            channel.health.count("text_queries_rejected")
            channel.health.problem(f"text query rejected: {error}")
            return
        channel.last_text_submit = 0.0
        where = f" on camera {channel.name}" if channel.name else ""
        self.logger.info(f"text query{where}: {', '.join(channel.text_queries) or '(cleared)'}")
