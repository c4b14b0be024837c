"""3D answers as ROS messages: Instance3DArray, the labelled cloud's fields and counts, and markers,
built from a ray-cast scene of known geometry (no node process needed)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sensor_msgs.msg import PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ovsam_ros.depth_fusion import DepthFusion
from ovsam_ros.depth_image import depth_from_array
from ovsam_ros.instances3d_conversion import (
    BOXES_NAMESPACE,
    LABELS_2D_NAMESPACE,
    LABELS_3D_NAMESPACE,
    detections_3d,
    fusion_to_msg,
    labelled_cloud,
    with_3d_markers,
)
from tests.node.depth_scenes import CX, CY, FX, FY, HEIGHT, WIDTH, default_scene

pytestmark = pytest.mark.ros
SECOND = 1_000_000_000
LABELLED_FIELDS = [("x", 0, PointField.FLOAT32), ("y", 4, PointField.FLOAT32), ("z", 8, PointField.FLOAT32),
                   ("rgb", 12, PointField.FLOAT32), ("instance_id", 16, PointField.UINT32),
                   ("class_index", 20, PointField.INT32)]


def instance(mask, prompt_id, label, class_index, track_id=0):
    rows, cols = np.nonzero(mask)
    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    prediction = SimpleNamespace(mask=mask, box=box, prompt_id=prompt_id, label=label, class_index=class_index,
                                 score=0.75)
    return SimpleNamespace(prediction=prediction, track_id=track_id)


@pytest.fixture(scope="module")
def placed():
    """Box and sphere placed from millimetre depth; a third instance (a patch with no depth) fails."""
    objects, rendered = default_scene()
    depth_mm = np.round(rendered.depth * 1000).astype(np.uint16)
    dark = np.zeros((HEIGHT, WIDTH), bool)
    dark[5:15, 5:15] = True
    depth_mm[dark] = 0
    instances = [instance(rendered.mask(0), "box-prompt", "box", 4, track_id=7),
                 instance(dark, "dark-prompt", "shadow", 1),
                 instance(rendered.mask(1), "", "ball", 2)]
    fusion = DepthFusion()
    header = Header(frame_id="camera_optical")
    header.stamp.sec = 1
    fusion.add(depth_from_array(depth_mm, "16UC1", SECOND, header=Header(frame_id="depth_optical")))
    camera_info = SimpleNamespace(width=WIDTH, height=HEIGHT, k=[FX, 0, CX, 0, FY, CY, 0, 0, 1], d=[],
                                  distortion_model="")
    result = fusion.locate(SimpleNamespace(stamp_ns=SECOND, width=WIDTH, height=HEIGHT), instances, camera_info, 0.02)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return SimpleNamespace(objects=objects, rendered=rendered, fusion=result, header=header, rgb=rgb)


def decode(cloud) -> np.ndarray:
    numpy_types = {PointField.FLOAT32: "<f4", PointField.UINT32: "<u4", PointField.INT32: "<i4"}
    dtype = np.dtype({"names": [f.name for f in cloud.fields], "offsets": [f.offset for f in cloud.fields],
                      "formats": [numpy_types[f.datatype] for f in cloud.fields], "itemsize": cloud.point_step})
    return np.frombuffer(bytes(cloud.data), dtype=dtype, count=cloud.width)


def project(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, column) of camera-frame points, by the pinhole projection."""
    u = np.round(FX * points[:, 0] / points[:, 2] + CX).astype(int)
    v = np.round(FY * points[:, 1] / points[:, 2] + CY).astype(int)
    return v, u


def test_instance3d_array_carries_geometry_and_failures(placed):
    msg = fusion_to_msg(placed.fusion, placed.header)
    assert msg.header.frame_id == "camera_optical" and msg.depth_header.frame_id == "depth_optical"
    assert [i.instance_index for i in msg.instances] == [0, 2]
    box, ball = msg.instances
    assert (box.id, box.prompt_id, box.label, box.class_index) == (7, "box-prompt", "box", 4)
    assert (ball.id, ball.prompt_id, ball.label, ball.class_index) == (0, "", "ball", 2)
    assert box.score == pytest.approx(0.75)
    true_box = placed.objects[0]
    centre = np.array([box.box_pose.position.x, box.box_pose.position.y, box.box_pose.position.z])
    assert np.linalg.norm(centre - true_box.center) < 0.01
    q = box.box_pose.orientation
    assert q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 == pytest.approx(1.0)
    assert (box.box_size.x, box.box_size.y, box.box_size.z) == pytest.approx((0.20, 0.10, 0.12), abs=0.02)
    assert box.mask_pixels == box.depth_pixels == box.valid_points == placed.rendered.mask(0).sum()
    for instance_msg in msg.instances:
        points = decode(instance_msg.points)
        assert [f.name for f in instance_msg.points.fields] == ["x", "y", "z"]
        assert instance_msg.points.width == instance_msg.valid_points == len(points)
        xyz = np.stack([points["x"], points["y"], points["z"]], axis=1)
        centroid = instance_msg.centroid
        assert np.allclose(xyz.mean(axis=0), [centroid.x, centroid.y, centroid.z], atol=1e-4)
        assert np.allclose(xyz.min(axis=0), [instance_msg.aabb_min.x, instance_msg.aabb_min.y, instance_msg.aabb_min.z])
    assert list(msg.failed_instance_indices) == [1] and list(msg.failed_prompt_ids) == ["dark-prompt"]
    assert "only 0 of 100 mask pixels have valid depth" in msg.failure_reasons[0]


def test_labelled_cloud_fields_counts_and_colours(placed):
    cloud = labelled_cloud(placed.fusion, placed.rgb, placed.header)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [(*f, 1) for f in LABELLED_FIELDS]
    assert cloud.point_step == 24 and cloud.height == 1 and cloud.is_dense and not cloud.is_bigendian
    assert cloud.row_step == 24 * cloud.width and len(cloud.data) == cloud.row_step
    assert cloud.header.frame_id == "camera_optical"
    points = decode(cloud)
    expected = {0: placed.rendered.mask(0).sum(), 2: placed.rendered.mask(1).sum()}
    ids, counts = np.unique(points["instance_id"], return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist())) == expected
    assert set(points["class_index"][points["instance_id"] == 0]) == {4}
    assert set(points["class_index"][points["instance_id"] == 2]) == {2}
    # every point lies on its object's mask, and carries that pixel's colour
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1)
    rows, cols = project(xyz)
    assert np.all(placed.rendered.object_id[rows, cols] == np.where(points["instance_id"] == 0, 1, 2))
    packed = points["rgb"].view(np.uint32)
    colours = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1)
    np.testing.assert_array_equal(colours, placed.rgb[rows, cols])


def test_empty_answer_gives_an_empty_cloud(placed):
    empty = type(placed.fusion)()
    cloud = labelled_cloud(empty, placed.rgb, placed.header)
    assert cloud.width == 0 and len(cloud.data) == 0 and len(cloud.fields) == 6


def test_markers_replace_ray_labels_of_placed_instances(placed):
    ray_labels = MarkerArray(markers=[Marker(action=Marker.DELETEALL, ns=LABELS_2D_NAMESPACE)] + [
        Marker(ns=LABELS_2D_NAMESPACE, id=index, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        for index in range(3)])
    markers = with_3d_markers(ray_labels, placed.fusion, placed.header).markers
    assert markers[0].action == Marker.DELETEALL
    assert [m.id for m in markers if m.ns == LABELS_2D_NAMESPACE and m.action == Marker.ADD] == [1]  # the failed one
    wires = [m for m in markers if m.ns == BOXES_NAMESPACE]
    labels = [m for m in markers if m.ns == LABELS_3D_NAMESPACE]
    assert [m.id for m in wires] == [m.id for m in labels] == [0, 2]
    assert labels[0].text == "box 0.75" and labels[1].text == "ball 0.75"
    wire = wires[0]
    assert wire.type == Marker.LINE_LIST and len(wire.points) == 24
    # the wire's corners, moved by its pose, are the true box's corners
    q = wire.pose.orientation
    x, y, z, w = q.x, q.y, q.z, q.w
    rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    position = np.array([wire.pose.position.x, wire.pose.position.y, wire.pose.position.z])
    corners = np.unique(np.round([rotation @ [p.x, p.y, p.z] + position for p in wire.points], 4), axis=0)
    true_box = placed.objects[0]
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    true_corners = true_box.center + (signs * np.asarray(true_box.size) / 2) @ true_box.rotation.T
    assert len(corners) == 8
    assert max(np.min(np.linalg.norm(true_corners - c, axis=1)) for c in corners) < 0.02


def test_detection3d_array_only_with_vision_msgs(placed):
    try:
        import vision_msgs  # noqa: F401
    except ImportError:
        assert detections_3d(placed.fusion, placed.header) is None
    else:  # pragma: no cover - where vision_msgs exists
        msg = detections_3d(placed.fusion, placed.header)
        assert [d.results[0].hypothesis.class_id for d in msg.detections] == ["box", "ball"]


def test_detection3d_array_fills_the_vision_msgs_layout(placed, monkeypatch):
    """vision_msgs is not installable here: stand-ins with its field layout (ROS 2 Humble and later)."""
    from geometry_msgs.msg import Pose, PoseWithCovariance, Vector3

    from ovsam_ros import instances3d_conversion

    class Detection3DArray:
        def __init__(self, header=None):
            self.header, self.detections = header, []

    class Detection3D:
        def __init__(self, header=None, id=""):  # noqa: A002 - the message's field name
            self.header, self.id, self.results = header, id, []
            self.bbox = SimpleNamespace(center=Pose(), size=Vector3())

    class ObjectHypothesisWithPose:
        def __init__(self):
            self.hypothesis = SimpleNamespace(class_id="", score=0.0)
            self.pose = PoseWithCovariance()

    for stand_in in (Detection3DArray, Detection3D, ObjectHypothesisWithPose):
        monkeypatch.setattr(instances3d_conversion, stand_in.__name__, stand_in)
    msg = detections_3d(placed.fusion, placed.header)
    assert msg.header is placed.header
    box, ball = msg.detections
    # The ids of the same instances' Detection2Ds (detections_2d): the box's track id, the untracked
    # ball's index in the frame (its `instance_ids` pixel value minus 1).
    assert (box.id, ball.id) == ("7", "index-2")
    assert [(d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) for d in msg.detections] == [
        ("box", 0.75), ("ball", 0.75)]
    geometry = placed.fusion.located[0].geometry
    assert (box.bbox.size.x, box.bbox.size.y, box.bbox.size.z) == pytest.approx(tuple(geometry.box.size))
    assert box.bbox.center.position.x == pytest.approx(geometry.box.center[0])
    assert box.results[0].pose.pose.position.z == pytest.approx(geometry.centroid[2])
