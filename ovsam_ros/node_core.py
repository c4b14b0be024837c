"""The ROS side of ovsam_ros: parameters, topics and services around PerceptionEngine.

Shared by the plain node (configure + activate at start) and the lifecycle node (on_configure loads
the model, on_activate subscribes, on_deactivate unsubscribes, on_cleanup releases the model).
Callbacks only convert messages and hand work to the inference thread; every error in a callback is
reported (log + diagnostics, and per prompt in failed_prompt_ids) and never escapes.
"""
from __future__ import annotations

import functools
import itertools
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future as RclpyFuture
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from ovsam_model.text_query import parse_text_query
from ovsam_ros.msg import InstanceMaskArray, PromptArray
from ovsam_ros.srv import Segment, SetVocabulary

from .camera_geometry import ProjectionError, project_to_pixel
from .depth_fusion import DepthError, DepthFusion, Fusion3D, depth_from_msg
from .diagnostics import build_status, diagnostic_array
from .engine import Answer, EngineSettings, PerceptionEngine
from .frame_buffer import Frame, stamp_to_ns
from .image_conversion import ImageConversionError, array_to_image, compressed_to_rgb, image_to_rgb
from .instances3d_conversion import Instances3DPublisher, fusion_to_msg, with_3d_markers
from .markers import label_markers
from .predictor_process import PredictorProcess
from .prompt_conversion import (PromptConversionError, PromptFailure, click_request,
                                request_from_prompt_msg, requests_from_detections)
from .result_conversion import answer_to_msg
from .segment_3d import locate_segment_answer
from .settings import DESCRIPTIONS, RUNTIME_PARAMETERS, NodeSettings
from .vocabulary_request import resolve_vocabulary_request
from .worker import InferenceWorker

try:  # optional: only where vision_msgs is installed (not on PyPI)
    from vision_msgs.msg import Detection2DArray
except ImportError:  # pragma: no cover - exercised where vision_msgs exists
    Detection2DArray = None

MAX_PROMPTS_PER_MESSAGE = 256
# Prompt topics keep every sample (reliable, KEEP_ALL): a prompt that DDS overwrote before the
# callback ran could never be answered. Images keep a short history: stale frames are meant to go.
PROMPT_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
RESULT_QUEUE_DEPTH = 1000


def guarded(method: Callable) -> Callable:
    """No exception escapes a callback: it is logged and counted, and the node keeps running."""

    @functools.wraps(method)
    def wrapper(self: "OVSAMNodeCore", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001
            self.count("callback_errors")
            self.problem(f"{method.__name__}: {type(error).__name__}: {error}")
            return None

    return wrapper


class OVSAMNodeCore:
    def __init__(self, node: Any, predictor_factory: Callable[[NodeSettings], Any] | None = None) -> None:
        self.node = node
        self.logger = node.get_logger()
        self._predictor_factory = predictor_factory or default_predictor_factory
        self.settings = self._declare_parameters()
        self.engine: PerceptionEngine | None = None
        self.worker: InferenceWorker | None = None
        self.camera_info: CameraInfo | None = None
        self.text_queries: tuple[str, ...] = ()
        self.counters: dict[str, int] = {}
        self.problems: list[str] = []
        self.last_image_time: float | None = None
        self._last_text_submit = 0.0
        self._image_frame_id = ""
        self._click_ids = itertools.count(1)
        self._subscriptions: list[Any] = []
        self._model_info: dict[str, str] = {}
        self.instances_pub = node.create_publisher(InstanceMaskArray, "instances", RESULT_QUEUE_DEPTH)
        self.overlay_pub = node.create_publisher(Image, "overlay", 2)
        self.markers_pub = node.create_publisher(MarkerArray, "markers", 2)
        self.diagnostics_pub = node.create_publisher(DiagnosticArray, "/diagnostics", 2)
        self.depth = DepthFusion(self.settings.geometry())  # depth images by stamp, for 3D instances (optional input)
        self.outputs_3d = Instances3DPublisher(node)
        # The services' coroutines stay pending while they await the inference thread, and a pending
        # task holds its callback group: in the node's default (mutually exclusive) group it would
        # hold up every image and prompt callback until the call finished.
        services_group = ReentrantCallbackGroup()
        node.create_service(Segment, "segment", self._on_segment, callback_group=services_group)
        node.create_service(SetVocabulary, "set_vocabulary", self._on_set_vocabulary, callback_group=services_group)
        node.create_timer(1.0, self._publish_diagnostics)
        node.add_on_set_parameters_callback(self._on_parameters)

    # -- parameters ----------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeSettings:
        defaults = NodeSettings()
        values = {}
        for name, default in vars(defaults).items():
            descriptor = ParameterDescriptor(description=DESCRIPTIONS.get(name, ""))
            values[name] = self.node.declare_parameter(name, default, descriptor).value
        settings = NodeSettings(**values)
        settings.validate()
        return settings

    def _on_parameters(self, parameters: list[Any]) -> SetParametersResult:
        updated = NodeSettings(**vars(self.settings))
        for parameter in parameters:
            if parameter.name not in RUNTIME_PARAMETERS and self.engine is not None:
                return SetParametersResult(successful=False,
                                           reason=f"'{parameter.name}' is read at configure time; restart or reconfigure the node")
            setattr(updated, parameter.name, parameter.value)
        try:
            updated.validate()
            if updated.vocabulary != self.settings.vocabulary and self.engine is not None:
                # set_parameters is a service any participant can call: a file named at run time is
                # held to the same vocabulary_dirs rule as SetVocabulary.
                spec = (resolve_vocabulary_request(updated.vocabulary, [], updated.vocabulary_dirs)
                        if updated.vocabulary else "")
                self._switch_vocabulary("" if spec == "default" else spec)
        except Exception as error:  # noqa: BLE001
            return SetParametersResult(successful=False, reason=str(error))
        self.settings = updated
        if self.engine is not None:
            self._apply_engine_settings()
        return SetParametersResult(successful=True)

    def _apply_engine_settings(self) -> None:
        settings = self.engine.settings
        settings.top_k = self.settings.top_k
        settings.score_threshold = self.settings.score_threshold
        settings.max_instances = self.settings.max_instances
        if self.worker is not None:
            self.worker.max_prompt_wait_s = self.settings.max_prompt_wait_s

    # -- lifecycle -----------------------------------------------------------------------------
    def configure(self) -> None:
        """Load the model (raises with a clear message on a missing or corrupt checkpoint)."""
        settings = self.settings
        if settings.inference_process:
            predictor = PredictorProcess(self._predictor_factory, settings, call_timeout_s=settings.inference_timeout_s)
        else:
            predictor = self._predictor_factory(settings)
        engine_settings = EngineSettings(top_k=settings.top_k, score_threshold=settings.score_threshold,
                                         max_instances=settings.max_instances,
                                         frame_buffer_size=settings.frame_buffer_size,
                                         track_lost_after=settings.track_lost_after)
        self.engine = PerceptionEngine(predictor, engine_settings)
        self.worker = InferenceWorker(self.engine, self._publish_answer,
                                      max_pending_prompts=settings.max_pending_prompts,
                                      max_prompt_wait_s=settings.max_prompt_wait_s,
                                      log_error=self.logger.error)
        self._model_info = {"model": settings.model, "device": str(getattr(predictor, "device", settings.device)),
                            "backend": settings.backend}
        self.worker.start()
        self.logger.info(f"model {settings.model} ready on {self._model_info['device']} "
                         f"({predictor.vocabulary.size} classes)")

    def activate(self) -> None:
        node, qos = self.node, self._image_qos()
        image_topic = ("image/compressed", CompressedImage) if self.settings.use_compressed else ("image", Image)
        self._subscriptions = [
            node.create_subscription(image_topic[1], image_topic[0], self._on_image, qos),
            node.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos),
            node.create_subscription(Image, "depth", self._on_depth, qos),
            node.create_subscription(PromptArray, "prompts", self._on_prompts, PROMPT_QOS),
            node.create_subscription(PointStamped, "clicked_point", self._on_clicked_point, PROMPT_QOS),
            node.create_subscription(Point, "image_click", self._on_image_click, PROMPT_QOS),
            node.create_subscription(String, "text_query", self._on_text_query, 10),
        ]
        if Detection2DArray is not None:
            self._subscriptions.append(node.create_subscription(
                Detection2DArray, "detections", self._on_detections, PROMPT_QOS))

    def deactivate(self) -> None:
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._subscriptions = []

    def cleanup(self) -> None:
        self.deactivate()
        if self.worker is not None:
            self.worker.stop()
        if self.engine is not None and isinstance(self.engine.predictor, PredictorProcess):
            self.engine.predictor.close()
        self.worker, self.engine = None, None

    def _image_qos(self) -> QoSProfile:
        return qos_profile_sensor_data if self.settings.image_qos == "sensor_data" else QoSProfile(depth=5)

    # -- inputs --------------------------------------------------------------------------------
    @guarded
    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.count("images_received")
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ImageConversionError as error:
            self.count("images_rejected")
            self.problem(f"image rejected: {error}")
            return
        now = time.monotonic()
        self.last_image_time = now
        self._image_frame_id = msg.header.frame_id
        frame = Frame(stamp_ns=stamp_to_ns(msg.header.stamp), rgb=rgb, header=msg.header, received_at=now)
        self.engine.frames.add(frame)
        queries = ()
        if self.text_queries and now - self._last_text_submit >= 1.0 / self.settings.text_rate_hz:
            queries, self._last_text_submit = self.text_queries, now
        if queries or len(self.engine.tracker):
            self.worker.submit_frame(frame, queries)

    @guarded
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    @guarded
    def _on_depth(self, msg: Image) -> None:
        try:
            self.depth.add(depth_from_msg(msg))
        except (DepthError, ImageConversionError) as error:
            self.count("depth_rejected")
            self.problem(f"depth rejected: {error}")

    @guarded
    def _on_prompts(self, msg: PromptArray) -> None:
        if self.worker is None:
            return
        self.count("prompt_messages")
        requests, failures = [], []
        array_stamp = stamp_to_ns(msg.header.stamp)
        for index, prompt in enumerate(msg.prompts):
            if index >= MAX_PROMPTS_PER_MESSAGE:
                failures.append(PromptFailure(prompt.id, f"more than {MAX_PROMPTS_PER_MESSAGE} prompts in one message"))
                continue
            stamp = stamp_to_ns(prompt.header.stamp) or array_stamp
            try:
                requests.append(request_from_prompt_msg(prompt, stamp))
            except (PromptConversionError, ValueError, TypeError) as error:
                failures.append(PromptFailure(prompt.id, str(error)))
        if failures:
            self._publish_answer(Answer(frame=None, failures=failures), header=msg.header)
        if requests:
            self.worker.submit_prompts(requests)

    @guarded
    def _on_image_click(self, msg: Point) -> None:
        if self.worker is None:
            return
        prompt_id = f"image_click-{next(self._click_ids)}"
        try:
            self.worker.submit_prompts([click_request(prompt_id, msg.x, msg.y)])
        except PromptConversionError as error:
            self._publish_answer(Answer(frame=None, failures=[PromptFailure(prompt_id, str(error))]))

    @guarded
    def _on_clicked_point(self, msg: PointStamped) -> None:
        if self.worker is None:
            return
        prompt_id = f"clicked_point-{next(self._click_ids)}"
        try:
            u, v = self._clicked_point_to_pixel(msg)
            request = click_request(prompt_id, u, v)
        except (ProjectionError, PromptConversionError) as error:
            self.problem(f"clicked_point rejected: {error}")
            self._publish_answer(Answer(frame=None, failures=[PromptFailure(prompt_id, str(error))]))
            return
        self.worker.submit_prompts([request])

    def _clicked_point_to_pixel(self, msg: PointStamped) -> tuple[float, float]:
        if self.camera_info is None:
            raise ProjectionError("no camera_info received yet: cannot project the clicked point")
        camera_frame = self.camera_info.header.frame_id or self._image_frame_id
        point = msg.point
        if msg.header.frame_id and camera_frame and msg.header.frame_id != camera_frame:
            point = self._transform_point(msg, camera_frame)
        return project_to_pixel(point.x, point.y, point.z, self.camera_info)

    def _transform_point(self, msg: PointStamped, target_frame: str) -> Point:
        try:
            import tf2_geometry_msgs  # noqa: F401 - registers PointStamped with tf2
            from tf2_ros import Buffer, TransformListener
        except ImportError:
            raise ProjectionError(
                f"clicked point is in frame '{msg.header.frame_id}', the camera is '{target_frame}', and tf2_ros "
                f"is not installed: publish the point in '{target_frame}' or install tf2_ros") from None
        if not hasattr(self, "_tf_buffer"):
            self._tf_buffer = Buffer()
            self._tf_listener = TransformListener(self._tf_buffer, self.node)
        try:
            return self._tf_buffer.transform(msg, target_frame).point
        except Exception as error:  # noqa: BLE001 - tf2 raises several unrelated types
            raise ProjectionError(f"cannot transform the clicked point from '{msg.header.frame_id}' to "
                                  f"'{target_frame}': {error}") from None

    @guarded
    def _on_detections(self, msg: Any) -> None:
        if self.worker is None:
            return
        stamp = stamp_to_ns(msg.header.stamp)
        self.worker.submit_prompts(requests_from_detections(msg.detections[:MAX_PROMPTS_PER_MESSAGE], stamp, "detection"))

    @guarded
    def _on_text_query(self, msg: String) -> None:
        try:
            self.text_queries = tuple(parse_text_query(msg.data, allow_empty=True))
        except ValueError as error:
            self.count("text_queries_rejected")
            self.problem(f"text query rejected: {error}")
            return
        self._last_text_submit = 0.0
        self.logger.info(f"text query: {', '.join(self.text_queries) or '(cleared)'}")

    # -- services ------------------------------------------------------------------------------
    async def _on_segment(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        try:
            if self.worker is None:
                raise RuntimeError("the node is not configured (no model loaded)")
            queries = parse_text_query(list(request.text_queries), allow_empty=True)
            if request.image.width == 0 or request.image.height == 0:
                frame = self.engine.frames.latest()
                if frame is None:
                    raise RuntimeError("no image in the request and no frame received yet")
            else:
                frame = Frame(stamp_ns=stamp_to_ns(request.image.header.stamp), rgb=image_to_rgb(request.image),
                              header=request.image.header, source=f"service-{next(self._click_ids)}")
            requests, failures = [], []
            for prompt in request.prompts[:MAX_PROMPTS_PER_MESSAGE]:
                try:
                    requests.append(request_from_prompt_msg(prompt, frame.stamp_ns))
                except (PromptConversionError, ValueError) as error:
                    failures.append(PromptFailure(prompt.id, str(error)))
            answer = await self._on_inference_thread(lambda: self.engine.segment_image(frame, requests, queries))
            answer.failures = failures + answer.failures
            response.result = answer_to_msg(answer)
            fusion = locate_segment_answer(answer, request.depth, request.camera_info, self.depth, self.camera_info,
                                           self.settings.depth_stamp_tolerance_s)
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
            self.count("service_errors")
        return response

    async def _on_set_vocabulary(self, request: SetVocabulary.Request, response: SetVocabulary.Response):
        try:
            if self.worker is None:
                raise RuntimeError("the node is not configured (no model loaded)")
            spec = resolve_vocabulary_request(request.name, list(request.classes), self.settings.vocabulary_dirs)
            if spec == "default":
                spec = str(self.engine.predictor.default_vocabulary)
            response.size = await self._on_inference_thread(lambda: self.engine.set_vocabulary(spec))
            response.success, response.message = True, f"vocabulary has {response.size} classes"
        except Exception as error:  # noqa: BLE001
            # A call that timed out is still queued: it may yet take effect, so do not promise the old one stays.
            outcome = ("the switch may still take effect later" if isinstance(error, TimeoutError)
                       else "the previous vocabulary stays")
            response.success, response.message = False, f"{type(error).__name__}: {error}; {outcome}"
            response.size = int(self.engine.predictor.vocabulary.size) if self.engine else 0
        return response

    async def _on_inference_thread(self, function: Callable[[], Any]) -> Any:
        """Await `function` run on the inference thread. The executor goes on taking images and prompts
        meanwhile: this coroutine is parked until the result (or service_timeout_s) arrives."""
        timeout = self.settings.service_timeout_s
        done = RclpyFuture(executor=self.node.executor)
        # With a done callback, completing the future schedules it on the executor, which wakes the
        # executor's wait; it then resumes this coroutine.
        done.add_done_callback(lambda _: None)
        settle_lock = threading.Lock()

        def settle(result: Any = None, error: BaseException | None = None) -> None:
            with settle_lock:
                if done.done():
                    return
                if error is not None:
                    done.set_exception(error)
                else:
                    done.set_result(result)

        def from_worker(work: Future) -> None:
            error = work.exception()
            settle(error=error) if error is not None else settle(result=work.result())

        self.worker.submit_call(function).add_done_callback(from_worker)
        timer = threading.Timer(timeout, settle, kwargs={"error": TimeoutError(
            f"no answer from the inference thread within service_timeout_s ({timeout:g} s)")})
        timer.daemon = True
        timer.start()
        try:
            return await done
        finally:
            timer.cancel()

    def _switch_vocabulary(self, spec: str | list[str]) -> int:
        """For the `vocabulary` parameter: parameter callbacks cannot be coroutines, so this one holds
        the executor while the vocabulary is encoded (the set_vocabulary service does not)."""
        # An empty `vocabulary` parameter means the model's own vocabulary, as at start-up.
        spec = spec or str(self.engine.predictor.default_vocabulary)
        return self.worker.call(lambda: self.engine.set_vocabulary(spec), timeout=self.settings.service_timeout_s)

    # -- outputs -------------------------------------------------------------------------------
    def _publish_answer(self, answer: Answer, header: Header | None = None) -> None:
        msg = answer_to_msg(answer, fallback_header=header)
        self.instances_pub.publish(msg)
        if answer.failures:
            # One line per answer, not per prompt: under overload hundreds fail each second.
            first = answer.failures[0]
            more = f" (and {len(answer.failures) - 1} more)" if len(answer.failures) > 1 else ""
            self.logger.warning(f"prompt '{first.prompt_id}' failed: {first.reason}{more}", throttle_duration_sec=1.0)
        if answer.frame is None or not answer.instances:
            return
        if self.settings.publish_overlay and self.overlay_pub.get_subscription_count() > 0:
            from ovsam_model.visualization import draw_instances

            overlay = draw_instances(answer.frame.rgb, [r.prediction for r in answer.instances])
            self.overlay_pub.publish(array_to_image(overlay, "rgb8", header=msg.header))
        fusion = self._publish_3d(answer, msg.header)
        if self.camera_info is not None and self.markers_pub.get_subscription_count() > 0:
            markers = label_markers(answer, self.camera_info, msg.header)
            self.markers_pub.publish(with_3d_markers(markers, fusion, msg.header) if fusion else markers)

    def _publish_3d(self, answer: Answer, header: Header) -> Fusion3D | None:
        """3D instances while depth arrives and someone listens. A frame without usable depth gets
        per-instance failures and a diagnostic, never 3D from the wrong pixels."""
        if not self.depth.buffer.received or not (self.outputs_3d.wanted() or self.markers_pub.get_subscription_count()):
            return None
        fusion = self.depth.locate(answer.frame, answer.instances, self.camera_info, self.settings.depth_stamp_tolerance_s)
        if fusion.problem:
            self.count("depth_unmatched")
            self.problem(fusion.problem)
        self.outputs_3d.publish(fusion, answer.frame.rgb, header)
        return fusion

    def _publish_diagnostics(self) -> None:
        try:
            worker = self.worker
            status = build_status(
                name=f"{self.node.get_name()}: ovsam", hardware_id=self._model_info.get("device", "unconfigured"),
                stats=worker.stats if worker else None, queue_depth=worker.queue_depth if worker else 0,
                counters=dict(self.counters), info=self._inference_info(), last_image_time=self.last_image_time,
                camera_timeout_s=self.settings.camera_timeout_s, problems=self.problems[-3:])
            self.problems = []
            self.diagnostics_pub.publish(diagnostic_array(status, self.node.get_clock().now().to_msg()))
        except Exception as error:  # noqa: BLE001
            self.logger.error(f"diagnostics failed: {error}", throttle_duration_sec=5.0)

    def _inference_info(self) -> dict[str, str]:
        """The model's static facts plus what changes while it runs (vocabulary, inference process)."""
        info = dict(self._model_info)
        if self.engine is None:
            return info
        predictor = self.engine.predictor
        info["vocabulary_size"] = str(predictor.vocabulary.size)
        if isinstance(predictor, PredictorProcess):
            info["inference"] = f"child process {predictor.pid}"
            info["inference_restarts"] = str(predictor.restarts)
        else:
            info["inference"] = "thread"
        return info

    # -- bookkeeping ---------------------------------------------------------------------------
    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def problem(self, message: str) -> None:
        self.problems.append(message)
        del self.problems[:-10]
        self.logger.warning(message, throttle_duration_sec=1.0)


def default_predictor_factory(settings: NodeSettings) -> Any:
    from ovsam_model.predictor import OVSAMPredictor

    return OVSAMPredictor.from_pretrained(
        settings.model, settings.weights_dir or None, device=settings.device,
        vocabulary=settings.vocabulary or None, cache_size=settings.feature_cache_size,
        backend=settings.backend, precision=settings.precision)
