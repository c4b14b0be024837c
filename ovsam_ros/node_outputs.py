"""What the node publishes for each answer: `instances`, the `overlay` picture, RViz `markers`, and
with depth the 3D instances (`instances_3d`, the labelled cloud `instances_cloud`, and
`detections_3d` where vision_msgs is installed).

Created when the node configures and destroyed on cleanup; in the managed node they are lifecycle
publishers, which publish only while the node is active. Called on the inference thread.
"""
from __future__ import annotations

from typing import Any, Callable

from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ovsam_ros.msg import Instance3DArray, InstanceMaskArray

from .camera_inputs import CameraInputs
from .depth_fusion import Fusion3D
from .engine import Answer
from .frame_buffer import Frame
from .image_conversion import array_to_image
from .instances3d_conversion import detections_3d, fusion_to_msg, labelled_cloud, with_3d_markers
from .label_markers import label_markers
from .node_health import NodeHealth
from .result_conversion import answer_to_msg
from .settings import NodeSettings

try:  # optional: only where vision_msgs is installed (not on PyPI)
    from vision_msgs.msg import Detection3DArray
except ImportError:  # pragma: no cover - exercised where vision_msgs exists
    Detection3DArray = None

RESULT_QUEUE_DEPTH = 1000


class AnswerOutputs:
    def __init__(self, node: Any, *, managed: bool, camera: CameraInputs, health: NodeHealth,
                 settings: Callable[[], NodeSettings]) -> None:
        self.node = node
        self.logger = node.get_logger()
        self.camera, self.health, self._settings = camera, health, settings
        create = node.create_lifecycle_publisher if managed else node.create_publisher
        self._destroy = node.destroy_lifecycle_publisher if managed else node.destroy_publisher
        self.instances_pub = create(InstanceMaskArray, "instances", RESULT_QUEUE_DEPTH)
        self.overlay_pub = create(Image, "overlay", 2)
        self.markers_pub = create(MarkerArray, "markers", 2)
        # Shallow histories: each 3D message carries point clouds, and only the newest matters.
        self.instances_3d_pub = create(Instance3DArray, "instances_3d", 10)
        self.cloud_pub = create(PointCloud2, "instances_cloud", 2)
        self.detections_3d_pub = create(Detection3DArray, "detections_3d", 10) if Detection3DArray is not None else None

    def destroy(self) -> None:
        for publisher in self._publishers():
            self._destroy(publisher)

    def _publishers(self) -> list[Any]:
        publishers = [self.instances_pub, self.overlay_pub, self.markers_pub, self.instances_3d_pub, self.cloud_pub]
        return publishers + ([self.detections_3d_pub] if self.detections_3d_pub is not None else [])

    def publish_answer(self, answer: Answer, header: Header | None = None) -> None:
        msg = answer_to_msg(answer, fallback_header=header)
        self.instances_pub.publish(msg)
        if answer.failures:
            # One line per answer, not per prompt: under overload hundreds fail each second.
            first = answer.failures[0]
            more = f" (and {len(answer.failures) - 1} more)" if len(answer.failures) > 1 else ""
            self.logger.warning(f"prompt '{first.prompt_id}' failed: {first.reason}{more}", throttle_duration_sec=1.0)
        frame = answer.frame
        if frame is None or not answer.instances:
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
