"""3D answers (depth_fusion.Fusion3D) -> ROS messages: Instance3DArray, the labelled cloud for mapping
stacks, vision_msgs/Detection3DArray where vision_msgs is installed, and RViz box + label markers.
"""
from __future__ import annotations

import array
from typing import Any

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ovsam_ros.msg import Instance3D, Instance3DArray

from .depth_fusion import Fusion3D, Located
from .depth_geometry import OrientedBox
from .detection2d_conversion import detection_id

try:  # optional: only where vision_msgs is installed (not on PyPI)
    from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose
except ImportError:  # pragma: no cover - exercised where vision_msgs exists
    Detection3D = Detection3DArray = ObjectHypothesisWithPose = None

LABELS_2D_NAMESPACE = "ovsam_labels"   # label_markers.label_markers: labels on the ray at a guessed depth
BOXES_NAMESPACE = "ovsam_boxes"
LABELS_3D_NAMESPACE = "ovsam_labels_3d"

XYZ_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
# rgb is a float32 whose bits are 0x00RRGGBB: the layout RViz's RGB8 colour transformer and PCL read.
LABELLED_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"),
                           ("instance_id", "<u4"), ("class_index", "<i4")])
_POINT_FIELD_TYPES = {"f4": PointField.FLOAT32, "u4": PointField.UINT32, "i4": PointField.INT32}
# Edges of a box as pairs of OrientedBox.corners() rows (corners differing in exactly one bit).
_BOX_EDGES = [(a, a | 1 << axis) for a in range(8) for axis in range(3) if not a & 1 << axis]


def cloud_buffer(count: int, dtype: np.dtype) -> tuple[array.array, np.ndarray]:
    """A zeroed message payload and a structured numpy view of it: points are written straight
    into the bytes the message will carry (no copy, and no fresh pages for a temporary)."""
    payload = array.array("B", bytes(1)) * (count * dtype.itemsize)
    return payload, np.frombuffer(payload, dtype=dtype)


def point_cloud(payload: array.array, dtype: np.dtype, header: Header) -> PointCloud2:
    """An unorganised PointCloud2 (height 1) carrying `payload`, points laid out as `dtype`."""
    fields = [PointField(name=name, offset=offset, datatype=_POINT_FIELD_TYPES[kind.str[1:]], count=1)
              for name, (kind, offset) in dtype.fields.items()]
    count = len(payload) // dtype.itemsize
    return PointCloud2(header=header, height=1, width=count, fields=fields, is_bigendian=False,
                       point_step=dtype.itemsize, row_step=dtype.itemsize * count, data=payload, is_dense=True)


def xyz_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    payload, cloud = cloud_buffer(len(points), XYZ_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = points[:, 0], points[:, 1], points[:, 2]
    del cloud  # release the view of the payload
    return point_cloud(payload, XYZ_DTYPE, header)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) float32 carrying 0x00RRGGBB in its bits."""
    rgb = rgb.astype(np.uint32)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).view(np.float32)


def labelled_cloud(fusion: Fusion3D, rgb: np.ndarray, header: Header) -> PointCloud2:
    """Every placed instance's points in one cloud: x y z, the colour image's rgb, instance_id (the
    instance's position in InstanceMaskArray.instances, as Instance3D.instance_index) and class_index.
    Not exclusive: a pixel inside two instances' masks is a point of each (the instance_ids image
    gives it one owner)."""
    payload, cloud = cloud_buffer(sum(located.geometry.valid_points for located in fusion.located), LABELLED_DTYPE)
    colours = rgb.reshape(-1, 3)  # a view for a contiguous image
    start = 0
    for located in fusion.located:
        geometry = located.geometry
        _fill_labelled(cloud[start:start + geometry.valid_points], located, colours)
        start += geometry.valid_points
    del cloud  # release the view of the payload
    return point_cloud(payload, LABELLED_DTYPE, header)


def _fill_labelled(part: np.ndarray, located: Located, colours: np.ndarray) -> None:
    geometry = located.geometry
    part["x"], part["y"], part["z"] = geometry.points[:, 0], geometry.points[:, 1], geometry.points[:, 2]
    part["rgb"] = pack_rgb(colours.take(geometry.pixel_index, axis=0))
    part["instance_id"] = located.index
    part["class_index"] = located.result.prediction.class_index


def box_pose(box: OrientedBox) -> Pose:
    x, y, z, w = box.quaternion()
    return Pose(position=_point(box.center), orientation=Quaternion(x=x, y=y, z=z, w=w))


def instance3d_to_msg(located: Located, header: Header) -> Instance3D:
    prediction, geometry = located.result.prediction, located.geometry
    return Instance3D(
        id=int(located.result.track_id), instance_index=located.index, prompt_id=prediction.prompt_id,
        label=prediction.label, class_index=int(prediction.class_index), score=float(prediction.score),
        centroid=_point(geometry.centroid), box_pose=box_pose(geometry.box),
        box_size=Vector3(x=float(geometry.box.size[0]), y=float(geometry.box.size[1]), z=float(geometry.box.size[2])),
        aabb_min=_point(geometry.aabb_min), aabb_max=_point(geometry.aabb_max),
        mask_pixels=geometry.mask_pixels, depth_pixels=geometry.depth_pixels, valid_points=geometry.valid_points,
        points=xyz_cloud(geometry.points, header))


def fusion_to_msg(fusion: Fusion3D, header: Header) -> Instance3DArray:
    msg = Instance3DArray(header=header)
    if fusion.depth is not None and fusion.depth.header is not None:
        msg.depth_header = fusion.depth.header
    msg.instances = [instance3d_to_msg(located, header) for located in fusion.located]
    msg.failed_instance_indices = [failure.index for failure in fusion.failures]
    msg.failed_prompt_ids = [failure.prompt_id for failure in fusion.failures]
    msg.failure_reasons = [failure.reason for failure in fusion.failures]
    return msg


def detections_3d(fusion: Fusion3D, header: Header) -> Any:
    """vision_msgs/Detection3DArray (box = the oriented box; hypothesis pose = the centroid; id = the
    instance's Detection2D id, `detection_id`); None where vision_msgs is not installed."""
    if Detection3DArray is None:
        return None
    msg = Detection3DArray(header=header)
    for located in fusion.located:
        prediction, geometry = located.result.prediction, located.geometry
        detection = Detection3D(header=header, id=detection_id(located.result, located.index))
        detection.bbox.center = box_pose(geometry.box)
        detection.bbox.size = Vector3(x=float(geometry.box.size[0]), y=float(geometry.box.size[1]),
                                      z=float(geometry.box.size[2]))
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = prediction.label
        hypothesis.hypothesis.score = float(prediction.score)
        hypothesis.pose.pose.position = _point(geometry.centroid)
        hypothesis.pose.pose.orientation.w = 1.0
        detection.results.append(hypothesis)
        msg.detections.append(detection)
    return msg


def box_markers(fusion: Fusion3D, header: Header) -> list[Marker]:
    """A wire box and a label above it for every placed instance (ids = instance index)."""
    markers = []
    for located in fusion.located:
        box, prediction = located.geometry.box, located.result.prediction
        colour = class_colour(prediction.class_index)
        wire = Marker(header=header, ns=BOXES_NAMESPACE, id=located.index, type=Marker.LINE_LIST, action=Marker.ADD,
                      pose=box_pose(box))
        local = OrientedBox(center=np.zeros(3), rotation=np.eye(3), size=box.size).corners()
        wire.points = [_point(local[corner]) for edge in _BOX_EDGES for corner in edge]
        wire.scale.x = 0.004
        wire.color.r, wire.color.g, wire.color.b, wire.color.a = colour
        label = Marker(header=header, ns=LABELS_3D_NAMESPACE, id=located.index, type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, text=f"{prediction.label} {prediction.score:.2f}")
        label.pose.position = _point(box.center + box.rotation[:, 2] * (box.size[2] / 2.0 + 0.03))
        label.pose.orientation.w = 1.0
        label.scale.z = 0.04
        label.color.r = label.color.g = label.color.b = label.color.a = 1.0
        markers.extend([wire, label])
    return markers


def with_3d_markers(markers: MarkerArray, fusion: Fusion3D, header: Header) -> MarkerArray:
    """The 2D label markers with the placed instances' ray labels replaced by their 3D box and label."""
    placed = {located.index for located in fusion.located}
    kept = [m for m in markers.markers if not (m.ns == LABELS_2D_NAMESPACE and m.id in placed)]
    if not any(m.action == Marker.DELETEALL for m in kept):
        kept.insert(0, Marker(header=header, action=Marker.DELETEALL))
    return MarkerArray(markers=kept + box_markers(fusion, header))


def class_colour(class_index: int) -> tuple[float, float, float, float]:
    """A stable, distinct colour per class (golden-angle hues)."""
    import colorsys

    hue = (max(class_index, 0) * 0.618033988749895) % 1.0
    return (*colorsys.hsv_to_rgb(hue, 0.8, 1.0), 1.0)


def _point(values: Any) -> Point:
    return Point(x=float(values[0]), y=float(values[1]), z=float(values[2]))
