"""The node's wiring: parameters, the lifecycle, and the input topics around PerceptionEngine.

Shared by the plain node (configure + activate at start) and the managed node (on_configure loads
the model and creates the publishers and services, on_activate subscribes, on_deactivate
unsubscribes, on_cleanup releases all of it). The input handlers (input_handlers.py) only convert
messages and hand work to the inference thread; every error in one is reported (log + diagnostics,
and per prompt in failed_prompt_ids) and never escapes. The services are in node_services.py, what is
published in node_outputs.py, the diagnostics in node_health.py.

Cameras: the `cameras` parameter names them (empty: one camera, topics without a prefix). Each camera
(camera_channel.py) has its own subscriptions and outputs under its name, its own engine (frame
buffer, tracks) and text query; all share the one predictor and the one inference thread, whose queue
per camera (worker.py) every handler names.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any, Callable

from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from ovsam_model.predictor_protocol import Predictor
from ovsam_model.triton.health_probe import ServerHealthProbe
from ovsam_ros.msg import PromptArray

from .camera_channel import CameraChannel
from .camera_inputs import CameraInputs
from .clicked_point import ClickedPointProjector
from .depth_fusion import DepthFusion
from .engine import EngineSettings, PerceptionEngine
from .input_handlers import InputHandlers
from .node_health import CameraFacts, HealthRecord, InferenceFacts, NodeHealth
from .node_outputs import AnswerOutputs
from .node_services import NodeServices
from .predictor_process import PredictorProcess
from .settings import DESCRIPTIONS, RUNTIME_PARAMETERS, NodeSettings
from .vocabulary_labels import vocabulary_name
from .vocabulary_request import parameter_vocabulary_spec
from .worker import InferenceWorker

try:  # optional: only where vision_msgs is installed (not on PyPI)
    from vision_msgs.msg import Detection2DArray
except ImportError:  # pragma: no cover - exercised where vision_msgs exists
    Detection2DArray = None

# Prompt topics keep every sample (reliable, KEEP_ALL): a prompt that DDS overwrote before the
# callback ran could never be answered. Images keep a short history: stale frames are meant to go.
PROMPT_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class Pipeline:
    """What configure builds and cleanup releases: the model, the inference thread, each camera's
    engine and outputs (in its channel), and the services."""

    predictor: Predictor
    worker: InferenceWorker
    channels: list[CameraChannel]
    services: NodeServices

    @property
    def engine(self) -> PerceptionEngine:
        """The first camera's engine (the only one's in a single-camera node)."""
        return self.worker.engine

    @property
    def outputs(self) -> AnswerOutputs:
        """The first camera's outputs (the only one's in a single-camera node)."""
        outputs = self.channels[0].outputs
        assert outputs is not None, "released"
        return outputs

    def release(self) -> None:
        # Services first (no new calls); the worker answers what is still queued through the outputs,
        # so they go last.
        self.services.destroy()
        self.worker.stop()
        if isinstance(self.predictor, PredictorProcess):
            self.predictor.close()
        for channel in self.channels:
            if channel.outputs is not None:
                channel.outputs.destroy()
            channel.engine, channel.outputs = None, None


class NodeWiring(InputHandlers):
    def __init__(self, node: Any, predictor_factory: Callable[[NodeSettings], Predictor] | None = None, *,
                 managed: bool = False) -> None:
        """`managed`: the node is a LifecycleNode, whose outputs are lifecycle publishers."""
        self.node = node
        self.logger = node.get_logger()
        self.managed = managed
        self._predictor_factory = predictor_factory or default_predictor_factory
        self.settings = self._declare_parameters()
        self.health = NodeHealth(node, self._inference_facts)
        self.channels = self._camera_channels()
        self._clicked_points = ClickedPointProjector(node)
        self.pipeline: Pipeline | None = None   # built on configure, released on cleanup
        self._server_probe: ServerHealthProbe | None = None  # with inference_server: its facts for diagnostics
        self._model_info: dict[str, str] = {}
        self._click_ids = itertools.count(1)
        self._subscriptions: list[Any] = []
        node.add_on_set_parameters_callback(self._on_parameters)

    def _camera_channels(self) -> list[CameraChannel]:
        """One channel per camera in `cameras`, or the single unnamed one; the single camera's health is
        the node's (one diagnostic status, as before cameras existed)."""
        geometry = self.settings.geometry()
        if not self.settings.cameras:
            return [CameraChannel("", CameraInputs(depth=DepthFusion(geometry)), self.health)]
        return [CameraChannel(name, CameraInputs(depth=DepthFusion(geometry)), HealthRecord(self.logger, name))
                for name in self.settings.cameras]

    # The single camera's state, by the names it had before cameras existed.
    @property
    def camera(self) -> CameraInputs:
        return self.channels[0].inputs

    @property
    def text_queries(self) -> tuple[str, ...]:
        return self.channels[0].text_queries

    @text_queries.setter
    def text_queries(self, queries: tuple[str, ...]) -> None:
        self.channels[0].text_queries = queries

    # -- parameters ----------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeSettings:
        defaults = NodeSettings()
        values: dict[str, Any] = {}
        for name, default in vars(defaults).items():
            descriptor = ParameterDescriptor(description=DESCRIPTIONS.get(name, ""))
            if isinstance(default, list):
                # A list parameter is declared by type: ROS cannot infer the type of an empty list, and
                # a parameter file cannot state one either; unset reads as the default (None -> []).
                value = self.node.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor).value
                values[name] = list(value) if value is not None else list(default)
            else:
                values[name] = self.node.declare_parameter(name, default, descriptor).value
        settings = NodeSettings(**values)
        settings.validate()
        return settings

    def current_settings(self) -> NodeSettings:
        return self.settings

    def _on_parameters(self, parameters: list[Any]) -> SetParametersResult:
        updated = NodeSettings(**vars(self.settings))
        for parameter in parameters:
            if parameter.name not in RUNTIME_PARAMETERS and self.pipeline is not None:
                return SetParametersResult(successful=False, reason=f"'{parameter.name}' is read at configure time; "
                                                                    "restart or reconfigure the node")
            setattr(updated, parameter.name, parameter.value)
        try:
            updated.validate()
            pipeline = self.pipeline
            if updated.vocabulary != self.settings.vocabulary and pipeline is not None:
                self._switch_vocabulary(pipeline, parameter_vocabulary_spec(
                    updated.vocabulary, updated.vocabulary_dirs, at_start_up=False))
        except Exception as error:  # noqa: BLE001
            return SetParametersResult(successful=False, reason=str(error))
        self.settings = updated
        if self.pipeline is not None:
            self._apply_engine_settings(self.pipeline)
        return SetParametersResult(successful=True)

    def _apply_engine_settings(self, pipeline: Pipeline) -> None:
        for queue in pipeline.worker.cameras.values():
            queue.engine.set_limits(top_k=self.settings.top_k, score_threshold=self.settings.score_threshold,
                                    max_instances=self.settings.max_instances)
        pipeline.worker.max_prompt_wait_s = self.settings.max_prompt_wait_s
        pipeline.worker.future_stamp_wait_s = self.settings.future_stamp_wait_s

    def _switch_vocabulary(self, pipeline: Pipeline, model_spec: str | None) -> int:
        """For the `vocabulary` parameter: parameter callbacks cannot be coroutines, so this one holds
        the executor while the vocabulary is encoded (the set_vocabulary service does not)."""
        engine = pipeline.engine
        size = pipeline.worker.call(lambda: engine.set_vocabulary(model_spec), timeout=self.settings.service_timeout_s)
        self._vocabulary_changed(pipeline.channels, pipeline.predictor, model_spec)
        return size

    @staticmethod
    def _vocabulary_changed(channels: list[CameraChannel], predictor: Predictor, spec: str | list[str] | None, *,
                            publish: bool = True) -> None:
        """The new vocabulary's names on every camera's latched `labels` (spec None: the model's own):
        one model, so one vocabulary for all cameras."""
        for channel in channels:
            if channel.outputs is not None:
                channel.outputs.vocabulary_changed(predictor.vocabulary.names, vocabulary_name(spec),
                                                   publish=publish)

    # -- lifecycle -----------------------------------------------------------------------------
    def configure(self) -> None:
        """Load the model, then create the outputs and services. Raises with a clear message on a
        missing or corrupt checkpoint, having released whatever it had built."""
        settings = self.settings
        predictor: Predictor
        if settings.inference_process:
            predictor = PredictorProcess(self._predictor_factory, settings, call_timeout_s=settings.inference_timeout_s)
        else:
            predictor = self._predictor_factory(settings)
        engine_settings = EngineSettings(top_k=settings.top_k, score_threshold=settings.score_threshold,
                                         max_instances=settings.max_instances,
                                         frame_buffer_size=settings.frame_buffer_size,
                                         track_lost_after=settings.track_lost_after)
        self.channels = channels = self._camera_channels()
        worker: InferenceWorker | None = None
        try:
            for channel in channels:
                # Per camera: its frame buffer and tracks (the engine), its outputs; the predictor is shared.
                channel.engine = PerceptionEngine(predictor, engine_settings)
                channel.outputs = AnswerOutputs(self.node, managed=self.managed, camera=channel.inputs,
                                                health=channel.health, settings=self.current_settings,
                                                topic=channel.topic)
            first = channels[0]
            assert first.engine is not None and first.outputs is not None
            worker = InferenceWorker(first.engine, first.outputs.publish_answer,
                                     max_pending_prompts=settings.max_pending_prompts,
                                     max_prompt_wait_s=settings.max_prompt_wait_s,
                                     future_stamp_wait_s=settings.future_stamp_wait_s, log_error=self.logger.error,
                                     camera=first.name)
            for channel in channels[1:]:
                assert channel.engine is not None and channel.outputs is not None
                worker.add_camera(channel.name, channel.engine, channel.outputs.publish_answer)
            worker.start()
            services = NodeServices(self.node, worker, channels, health=self.health,
                                    settings=self.current_settings,
                                    on_vocabulary_changed=lambda spec: self._vocabulary_changed(
                                        channels, predictor, spec))
            # Published on activate: the managed node's publishers are not active yet.
            self._vocabulary_changed(channels, predictor, start_up_vocabulary(settings), publish=False)
        except BaseException:
            if worker is not None:
                worker.stop()
            for channel in channels:
                if channel.outputs is not None:
                    channel.outputs.destroy()
                channel.engine, channel.outputs = None, None
            if isinstance(predictor, PredictorProcess):
                predictor.close()
            raise
        self.pipeline = Pipeline(predictor, worker, channels, services)
        self._model_info = {"model": settings.model, "device": str(getattr(predictor, "device", settings.device)),
                            "backend": f"triton at {settings.inference_server}" if settings.inference_server
                            else settings.backend}
        if settings.inference_server:
            self._server_probe = ServerHealthProbe(settings.inference_server).start()
        cameras = f" for cameras {', '.join(settings.cameras)}" if settings.cameras else ""
        self.logger.info(f"model {settings.model} ready on {self._model_info['device']} "
                         f"({first.engine.vocabulary_size} classes){cameras}")

    def activate(self) -> None:
        """Subscribe to every camera's inputs and publish the labels in force (the managed node calls
        this once its publishers are active)."""
        node, qos = self.node, self._image_qos()
        image_topic = ("image/compressed", CompressedImage) if self.settings.use_compressed else ("image", Image)
        self._subscriptions = []
        for channel in self.channels:
            if channel.outputs is not None:
                channel.outputs.publish_labels()
            inputs: list[tuple[Any, str, Callable, Any]] = [
                (image_topic[1], image_topic[0], self._on_image, qos),
                (CameraInfo, "camera_info", self._on_camera_info, qos),
                (Image, "depth", self._on_depth, qos),
                (PromptArray, "prompts", self._on_prompts, PROMPT_QOS),
                (PointStamped, "clicked_point", self._on_clicked_point, PROMPT_QOS),
                (Point, "image_click", self._on_image_click, PROMPT_QOS),
                (String, "text_query", self._on_text_query, 10),
            ]
            if Detection2DArray is not None:
                inputs.append((Detection2DArray, "detections", self._on_detections, PROMPT_QOS))
            self._subscriptions += [
                node.create_subscription(msg_type, channel.topic(name), functools.partial(handler, channel=channel),
                                         topic_qos)
                for msg_type, name, handler, topic_qos in inputs]

    def deactivate(self) -> None:
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._subscriptions = []

    def cleanup(self) -> None:
        self.deactivate()
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.release()
        probe, self._server_probe = self._server_probe, None
        if probe is not None:
            probe.stop()

    def _image_qos(self) -> QoSProfile:
        return qos_profile_sensor_data if self.settings.image_qos == "sensor_data" else QoSProfile(depth=5)

    # -- diagnostics -----------------------------------------------------------------------------
    def _inference_facts(self) -> InferenceFacts:
        """The model's static facts plus what changes while it runs (vocabulary, inference process);
        with `cameras`, each camera's queue and statistics apart."""
        pipeline = self.pipeline
        info = dict(self._model_info)
        hardware_id = self._model_info.get("device", "unconfigured")
        if pipeline is None:
            return InferenceFacts(hardware_id=hardware_id, info=info, camera_timeout_s=self.settings.camera_timeout_s)
        info["vocabulary_size"] = str(pipeline.engine.vocabulary_size)
        if self._server_probe is not None:
            info.update(self._server_probe.facts())
        predictor = pipeline.predictor
        if isinstance(predictor, PredictorProcess):
            info["inference"] = f"child process {predictor.pid}"
            info["inference_restarts"] = str(predictor.restarts)
        else:
            info["inference"] = "thread"
        worker = pipeline.worker
        if not self.settings.cameras:
            info["prompts_awaiting_frame"] = str(worker.prompts_awaiting_frame)
            return InferenceFacts(hardware_id=hardware_id, stats=worker.stats, queue_depth=worker.queue_depth,
                                  info=info, camera_timeout_s=self.settings.camera_timeout_s)
        info["cameras"] = ", ".join(self.settings.cameras)
        cameras = [CameraFacts(name=channel.name, health=channel.health, stats=worker.cameras[channel.name].stats,
                               queue_depth=worker.queue_depth_of(channel.name),
                               info={"prompts_awaiting_frame": str(worker.awaiting_frame_of(channel.name))})
                   for channel in pipeline.channels]
        return InferenceFacts(hardware_id=hardware_id, info=info, camera_timeout_s=self.settings.camera_timeout_s,
                              cameras=cameras)


def start_up_vocabulary(settings: NodeSettings) -> str | None:
    """The model's vocabulary spec for the start-up value of the `vocabulary` parameter."""
    return parameter_vocabulary_spec(settings.vocabulary, settings.vocabulary_dirs, at_start_up=True)


def default_predictor_factory(settings: NodeSettings) -> Predictor:
    from ovsam_model.predictor import OVSAMPredictor

    return OVSAMPredictor.from_pretrained(
        settings.model, settings.weights_dir or None, device=settings.device,
        vocabulary=start_up_vocabulary(settings), cache_size=settings.feature_cache_size,
        backend=settings.backend, precision=settings.precision,
        inference_server=settings.inference_server, server_timeout_s=settings.inference_server_timeout_s)
