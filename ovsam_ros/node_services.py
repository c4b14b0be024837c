"""The node's services: `segment` (prompts and text queries on a given image or the latest frame,
with a 3D answer where depth exists) and `set_vocabulary`.

Created when the node configures (an unconfigured node offers neither) and destroyed on cleanup.
Both are coroutines that await the inference thread (inference_bridge), so a call in progress never
holds up the executor's images and prompts. A failed call is an answer (success false and why),
and every prompt of a Segment request is answered under its id.

With several cameras, a Segment request names its camera (`camera`; empty is allowed only when the
node has one): the latest frame, the depth and the calibration are that camera's, and its tracks and
frame buffer are untouched by the call.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

from rclpy.callback_groups import ReentrantCallbackGroup

from ovsam_model.text_query import parse_text_query
from ovsam_ros.msg import InstanceMaskArray
from ovsam_ros.srv import Segment, SetVocabulary

from .camera_channel import CameraChannel
from .frame_buffer import SERVICE_SOURCE_PREFIX, Frame, stamp_to_ns
from .image_conversion import image_to_rgb
from .inference_bridge import on_inference_thread
from .instances3d_conversion import fusion_to_msg
from .node_health import NodeHealth
from .prompt_conversion import requests_from_prompt_msgs
from .result_conversion import answer_to_msg
from .segment_service_3d import locate_segment_answer
from .settings import NodeSettings
from .vocabulary_request import model_vocabulary_spec, resolve_vocabulary_request
from .worker import InferenceWorker


class NodeServices:
    def __init__(self, node: Any, worker: InferenceWorker, channels: list[CameraChannel], *,
                 health: NodeHealth, settings: Callable[[], NodeSettings],
                 on_vocabulary_changed: Callable[[str | list[str] | None], None]) -> None:
        """`on_vocabulary_changed(spec)` follows every successful switch (spec None: the model's own)."""
        self.node = node
        self._on_vocabulary_changed = on_vocabulary_changed
        self.worker, self.channels = worker, {channel.name: channel for channel in channels}
        self.health, self._settings = health, settings
        self._image_ids = itertools.count(1)
        # The services' coroutines stay pending while they await the inference thread, and a pending
        # task holds its callback group: in the node's default (mutually exclusive) group it would
        # hold up every image and prompt callback until the call finished.
        group = ReentrantCallbackGroup()
        self._services = [
            node.create_service(Segment, "segment", self._on_segment, callback_group=group),
            node.create_service(SetVocabulary, "set_vocabulary", self._on_set_vocabulary, callback_group=group),
        ]

    def destroy(self) -> None:
        for service in self._services:
            self.node.destroy_service(service)
        self._services = []

    async def _on_segment(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        try:
            settings = self._settings()
            channel = self._channel(request.camera)
            engine = channel.engine
            if engine is None:
                raise RuntimeError("the node is not configured")
            queries = parse_text_query(list(request.text_queries), allow_empty=True)
            if request.image.width == 0 or request.image.height == 0:
                frame = engine.latest_frame()
                if frame is None:
                    raise RuntimeError("no image in the request and no frame received yet")
            else:
                frame = Frame(stamp_ns=stamp_to_ns(request.image.header.stamp), rgb=image_to_rgb(request.image),
                              header=request.image.header, source=f"{SERVICE_SOURCE_PREFIX}{next(self._image_ids)}")
            # Every prompt on the request's frame, whatever its own stamp says.
            converted = requests_from_prompt_msgs(request.prompts, lambda _: frame.stamp_ns)
            answer = await self._on_inference_thread(lambda: engine.segment_image(frame, converted.requests, queries))
            answer.failures = converted.failures + answer.failures
            response.result = answer_to_msg(answer)
            fusion = locate_segment_answer(answer, request.depth, request.camera_info, channel.inputs.depth,
                                           channel.inputs.info, settings.depth_stamp_tolerance_s)
            response.result_3d.header = response.result.header
            if fusion is not None:
                response.result_3d = fusion_to_msg(fusion, response.result.header)
            response.success = True
            response.message = (f"{len(answer.instances)} instances, {len(answer.failures)} failed prompts"
                                + (f", {len(fusion.located)} placed in 3D" if fusion is not None else ""))
        except Exception as error:  # noqa: BLE001 - a failed call is an answer, not a crash
            response.success, response.message = False, f"{type(error).__name__}: {error}"
            # Every prompt still gets its own answer: the call's failure, under its id.
            ids = [str(p.id) for p in request.prompts]
            response.result = InstanceMaskArray(failed_prompt_ids=ids, failure_reasons=[response.message] * len(ids))
            self.health.count("service_errors")
        return response

    async def _on_set_vocabulary(self, request: SetVocabulary.Request,
                                 response: SetVocabulary.Response) -> SetVocabulary.Response:
        try:
            spec = resolve_vocabulary_request(request.name, list(request.classes), self._settings().vocabulary_dirs)
            engine, model_spec = self.worker.engine, model_vocabulary_spec(spec)
            response.size = await self._on_inference_thread(lambda: engine.set_vocabulary(model_spec))
            response.success, response.message = True, f"vocabulary has {response.size} classes"
            self._on_vocabulary_changed(model_spec)
        except Exception as error:  # noqa: BLE001
            # A call that timed out is still queued: it may yet take effect, so do not promise the old one stays.
            outcome = ("the switch may still take effect later" if isinstance(error, TimeoutError)
                       else "the previous vocabulary stays")
            response.success, response.message = False, f"{type(error).__name__}: {error}; {outcome}"
            response.size = self.worker.engine.vocabulary_size
        return response

    def _channel(self, camera: str) -> CameraChannel:
        """The request's camera: named, or the only one; an unknown or missing name is an error that
        lists the cameras."""
        if camera in self.channels:
            return self.channels[camera]
        names = ", ".join(name for name in self.channels if name)
        if not camera:
            raise ValueError(f"the node has several cameras; name one in the request's 'camera': {names}")
        if "" in self.channels:
            raise ValueError(f"camera '{camera}' unknown: the node has one camera (leave 'camera' empty)")
        raise ValueError(f"camera '{camera}' unknown; the node's cameras: {names}")

    async def _on_inference_thread(self, function: Callable[[], Any]) -> Any:
        return await on_inference_thread(self.worker, self.node.executor, function, self._settings().service_timeout_s)
