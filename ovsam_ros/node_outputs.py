"""What the node publishes for each answer: `instances`, the `overlay` picture, the label images
`instance_ids` and `semantic`, `detections_2d` where vision_msgs is installed, RViz `markers`, and
with depth the 3D instances (`instances_3d`, the labelled cloud `instances_cloud`, and
`detections_3d` where vision_msgs is installed); and on every vocabulary change the latched `labels`
(and `label_info` where vision_msgs is installed).

One set per camera: with the `cameras` parameter each camera's outputs are under its name
(`front/instances`, `front/labels`, ...); a single-camera node's carry no prefix.

Created when the node configures and destroyed on cleanup; in the managed node they are lifecycle
publishers, which publish only while the node is active. Answers are published on the inference
thread, the labels on the executor's.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from ovsam_ros.msg import Instance3DArray, InstanceMaskArray

from .camera_inputs import CameraInputs
from .depth_fusion import Fusion3D
from .detection2d_conversion import Detection2DArray, detections_2d
from .engine import Answer
from .frame_buffer import Frame
from .image_conversion import array_to_image
from .instances3d_conversion import detections_3d, fusion_to_msg, labelled_cloud, with_3d_markers
from .label_images import instance_id_image, semantic_image
from .label_markers import label_markers
from .node_health import HealthRecord
from .result_conversion import answer_to_msg
from .settings import NodeSettings
from .vocabulary_labels import LabelInfo, VocabularyLabels, label_info, labels_json

try:  # optional: only where vision_msgs is installed (not on PyPI)
    from vision_msgs.msg import Detection3DArray
except ImportError:  # pragma: no cover - exercised where vision_msgs exists
    Detection3DArray = None

RESULT_QUEUE_DEPTH = 1000
# A few answers can come for one frame (prompts in separate batches); each label image is one of them.
LABEL_IMAGE_QUEUE_DEPTH = 5
# Latched: a subscriber that comes later still gets the vocabulary in force.
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


class AnswerOutputs:
    def __init__(self, node: Any, *, managed: bool, camera: CameraInputs, health: HealthRecord,
                 settings: Callable[[], NodeSettings], topic: Callable[[str], str] = str) -> None:
        """`topic(name)`: the camera's name for each output topic (unchanged for the single camera)."""
        self.node = node
        self.logger = node.get_logger()
        self.camera, self.health, self._settings = camera, health, settings
        create = node.create_lifecycle_publisher if managed else node.create_publisher
        self._destroy = node.destroy_lifecycle_publisher if managed else node.destroy_publisher
        self.instances_pub = create(InstanceMaskArray, topic("instances"), RESULT_QUEUE_DEPTH)
        self.overlay_pub = create(Image, topic("overlay"), 2)
        self.markers_pub = create(MarkerArray, topic("markers"), 2)
        # Shallow histories: each 3D message carries point clouds, and only the newest matters.
        self.instances_3d_pub = create(Instance3DArray, topic("instances_3d"), 10)
        self.cloud_pub = create(PointCloud2, topic("instances_cloud"), 2)
        self.detections_3d_pub = (create(Detection3DArray, topic("detections_3d"), 10)
                                  if Detection3DArray is not None else None)
        self.instance_ids_pub = create(Image, topic("instance_ids"), LABEL_IMAGE_QUEUE_DEPTH)
        self.semantic_pub = create(Image, topic("semantic"), LABEL_IMAGE_QUEUE_DEPTH)
        # Not `detections`: that is an input (prompts from a detector) of this node.
        self.detections_2d_pub = (create(Detection2DArray, topic("detections_2d"), 10)
                                  if Detection2DArray is not None else None)
        self.labels_pub = create(String, topic("labels"), LATCHED_QOS)
        self.label_info_pub = create(LabelInfo, topic("label_info"), LATCHED_QOS) if LabelInfo is not None else None
        self.labels: VocabularyLabels | None = None
        self._labels_lock = threading.Lock()  # the service and the parameter callback may switch at once

    def destroy(self) -> None:
        for publisher in self._publishers():
            self._destroy(publisher)

    def _publishers(self) -> list[Any]:
        publishers = [self.instances_pub, self.overlay_pub, self.markers_pub, self.instances_3d_pub, self.cloud_pub,
                      self.detections_3d_pub, self.instance_ids_pub, self.semantic_pub, self.detections_2d_pub,
                      self.labels_pub, self.label_info_pub]
        return [publisher for publisher in publishers if publisher is not None]

    # -- labels ----------------------------------------------------------------------------------
    def vocabulary_changed(self, classes: Sequence[str], vocabulary: str, *, publish: bool = True) -> VocabularyLabels:
        """A new active vocabulary: the next version of the labels, published unless `publish` is false
        (at configure, before the managed node's publishers are active; activate publishes it)."""
        with self._labels_lock:
            version = self.labels.version + 1 if self.labels is not None else 1
            self.labels = VocabularyLabels(vocabulary=vocabulary, version=version, classes=tuple(classes))
            if publish:
                self._publish_labels(self.labels)
            return self.labels

    def publish_labels(self) -> None:
        """The labels in force again (on activate), with their version unchanged."""
        with self._labels_lock:
            if self.labels is not None:
                self._publish_labels(self.labels)

    def _publish_labels(self, labels: VocabularyLabels) -> None:
        self.labels_pub.publish(labels_json(labels))
        if self.label_info_pub is not None:
            header = Header(stamp=self.node.get_clock().now().to_msg(), frame_id=self.camera.image_frame_id)
            self.label_info_pub.publish(label_info(labels, header, self._settings().score_threshold))

    def publish_answer(self, answer: Answer, header: Header | None = None) -> None:
        msg = answer_to_msg(answer, fallback_header=header)
        self.instances_pub.publish(msg)
        if answer.failures:
            # One line per answer, not per prompt: under overload hundreds fail each second.
            first = answer.failures[0]
            more = f" (and {len(answer.failures) - 1} more)" if len(answer.failures) > 1 else ""
            self.logger.warning(f"prompt '{first.prompt_id}' failed: {first.reason}{more}", throttle_duration_sec=1.0)
        frame = answer.frame
        if frame is None:
            return
        self._publish_label_images(answer, frame, msg.header)
        if not answer.instances:
            return
        if self._settings().publish_overlay and self.overlay_pub.get_subscription_count() > 0:
            from ovsam_model.visualization import draw_instances

            overlay = draw_instances(frame.rgb, [r.prediction for r in answer.instances])
            self.overlay_pub.publish(array_to_image(overlay, "rgb8", header=msg.header))
        fusion = self._publish_3d(answer, frame, msg.header)
        camera_info = self.camera.info
        if camera_info is not None and self.markers_pub.get_subscription_count() > 0:
            markers = label_markers(answer, camera_info, msg.header)
            self.markers_pub.publish(with_3d_markers(markers, fusion, msg.header) if fusion else markers)

    def _publish_label_images(self, answer: Answer, frame: Frame, header: Header) -> None:
        """instance_ids, semantic and detections_2d for every answer on a frame, also an empty one
        (all zeros: nothing found), while someone listens. label_images.py has the overlap rule."""
        want_ids, want_semantic = (publisher.get_subscription_count() > 0
                                   for publisher in (self.instance_ids_pub, self.semantic_pub))
        if want_ids or want_semantic:
            predictions = [result.prediction for result in answer.instances]
            ids = instance_id_image(predictions, frame.height, frame.width)
            if want_ids:
                self.instance_ids_pub.publish(array_to_image(ids, "mono16", header=header))
            if want_semantic:
                semantic = semantic_image(ids, [prediction.class_index for prediction in predictions])
                self.semantic_pub.publish(array_to_image(semantic, "mono16", header=header))
        detections_pub = self.detections_2d_pub
        if detections_pub is not None and detections_pub.get_subscription_count() > 0:
            detections_pub.publish(detections_2d(answer.instances, header))

    def _publish_3d(self, answer: Answer, frame: Frame, header: Header) -> Fusion3D | None:
        """3D instances while depth arrives and someone listens. A frame without usable depth gets
        per-instance failures and a diagnostic, never 3D from the wrong pixels."""
        depth = self.camera.depth
        if not depth.buffer.received or not (self._3d_wanted() or self.markers_pub.get_subscription_count()):
            return None
        fusion = depth.locate(frame, answer.instances, self.camera.info, self._settings().depth_stamp_tolerance_s)
        if fusion.problem:
            self.health.count("depth_unmatched")
            self.health.problem(fusion.problem)
        self.instances_3d_pub.publish(fusion_to_msg(fusion, header))
        if fusion.located and self.cloud_pub.get_subscription_count() > 0:
            self.cloud_pub.publish(labelled_cloud(fusion, frame.rgb, header))
        detections_pub = self.detections_3d_pub
        if fusion.located and detections_pub is not None and detections_pub.get_subscription_count() > 0:
            detections_pub.publish(detections_3d(fusion, header))
        return fusion

    def _3d_wanted(self) -> bool:
        return any(publisher.get_subscription_count() > 0
                   for publisher in (self.instances_3d_pub, self.cloud_pub, self.detections_3d_pub)
                   if publisher is not None)
