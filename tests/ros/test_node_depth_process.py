"""ovsam_node as a real process with colour + registered depth + camera_info: prompts and RViz clicks
come back as Instance3DArray and a labelled cloud; unpaired or unregistered depth gives 2D results,
per-instance failures and a diagnostic.

The tiny model has random weights, so its masks are arbitrary: the truth is the 2D mask the node
published for the same prompt. Every 3D point must project into that mask at the depth the test
published there, and the counts must match what the test computes from the mask and depth itself.
"""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from visualization_msgs.msg import MarkerArray

from ovsam_ros.image_conversion import array_to_image
from ovsam_ros.msg import Instance3DArray
from tests.node.depth_scenes import CX, CY, FX, FY, HEIGHT, WIDTH, default_scene
from tests.ros.node_harness import NodeUnderTest, box_prompt, make_tiny_weights

pytestmark = pytest.mark.ros
CLASSES = ["box", "ball", "wall"]
SECOND = 1_000_000_000
FRAME_ID = "camera_color_optical_frame"


def scene_images():
    objects, rendered = default_scene()
    rgb = np.full((HEIGHT, WIDTH, 3), 150, np.uint8)
    rgb[rendered.object_id == 1] = (200, 40, 40)
    rgb[rendered.object_id == 2] = (40, 40, 200)
    depth_mm = np.round(rendered.depth * 1000).astype(np.uint16)
    depth_mm[::7, :] = 0  # sensor holes: every 7th row has no depth
    return objects, rendered, rgb, depth_mm


OBJECTS, RENDERED, RGB, DEPTH_MM = scene_images()


def stamped(msg, stamp_ns: int):
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, SECOND)
    msg.header.frame_id = FRAME_ID
    return msg


class DepthClient:
    """The test's side: publishes colour, depth and camera_info, collects the 3D outputs."""

    def __init__(self, harness: NodeUnderTest) -> None:
        self.harness = harness
        # Messages sent per topic, by the node's counter for that topic.
        self.sent = {"camera_info_received": 0, "depth_received": 0, "images_received": 0}
        node = harness.node
        reliable = QoSProfile(depth=10)
        self.depth_pub = node.create_publisher(Image, "depth", reliable)
        self.clicks_pub = node.create_publisher(PointStamped, "clicked_point", 10)
        self.answers_3d: list[Instance3DArray] = []
        self.clouds: list[PointCloud2] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.markers: list[MarkerArray] = []
        node.create_subscription(Instance3DArray, "instances_3d", self.answers_3d.append, 10)
        node.create_subscription(PointCloud2, "instances_cloud", self.clouds.append, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        node.create_subscription(MarkerArray, "markers", self.markers.append, 10)
        harness.spin_until(lambda: self.depth_pub.get_subscription_count() > 0 and
                           self.clicks_pub.get_subscription_count() > 0 and
                           node.count_publishers("instances_3d") > 0 and node.count_publishers("instances_cloud") > 0,
                           "the depth topics to connect")

    def publish(self, colour_stamp_ns: int, depth_stamp_ns: int, depth_mm: np.ndarray = DEPTH_MM) -> None:
        info = stamped(CameraInfo(width=WIDTH, height=HEIGHT, k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0],
                                  distortion_model="plumb_bob", d=[0.0] * 5), colour_stamp_ns)
        self.harness.info_pub.publish(info)
        self.depth_pub.publish(stamped(array_to_image(depth_mm, "16UC1"), depth_stamp_ns))
        self.harness.image_pub.publish(stamped(array_to_image(RGB, "rgb8"), colour_stamp_ns))
        # Topics are independent: wait until depth, calibration and colour have all arrived.
        for counter in self.sent:
            self.sent[counter] += 1
            self.harness.wait_counted(counter, self.sent[counter])

    def answer_3d(self, stamp_ns: int) -> Instance3DArray:
        def arrived() -> bool:
            return any(_stamp(a) == stamp_ns for a in self.answers_3d)

        self.harness.spin_until(arrived, f"an Instance3DArray for stamp {stamp_ns}")
        return next(a for a in self.answers_3d if _stamp(a) == stamp_ns)


def _stamp(msg) -> int:
    return msg.header.stamp.sec * SECOND + msg.header.stamp.nanosec


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    weights = make_tiny_weights(tmp_path_factory.mktemp("tiny-weights"), CLASSES)
    harness = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(weights), "image_qos": "reliable",
                             "depth_stamp_tolerance_s": 0.02})
    try:
        harness.wait_ready()
        harness.client = DepthClient(harness)
        yield harness
    finally:
        print(harness.close())


def mask_image(instance) -> np.ndarray:
    """The published 2D mask placed in a full-size image."""
    full = np.zeros((HEIGHT, WIDTH), bool)
    roi = instance.roi
    crop = np.frombuffer(bytes(instance.mask.data), np.uint8).reshape(roi.height, roi.width)
    full[roi.y_offset:roi.y_offset + roi.height, roi.x_offset:roi.x_offset + roi.width] = crop == 255
    return full


def cloud_points(cloud) -> np.ndarray:
    formats = {PointField.FLOAT32: "<f4", PointField.UINT32: "<u4", PointField.INT32: "<i4"}
    dtype = np.dtype({"names": [f.name for f in cloud.fields], "offsets": [f.offset for f in cloud.fields],
                      "formats": [formats[f.datatype] for f in cloud.fields], "itemsize": cloud.point_step})
    return np.frombuffer(bytes(cloud.data), dtype=dtype, count=cloud.width)


def assert_consistent_with_2d(instance_3d, instance_2d) -> None:
    """The 3D answer is built from exactly the 2D mask's pixels and the published depth."""
    mask = mask_image(instance_2d)
    assert (instance_3d.prompt_id, instance_3d.label, instance_3d.class_index) == (
        instance_2d.prompt_id, instance_2d.label, instance_2d.class_index)
    assert instance_3d.mask_pixels == mask.sum()
    assert instance_3d.depth_pixels == (mask & (DEPTH_MM > 0)).sum()
    assert 10 <= instance_3d.valid_points <= instance_3d.depth_pixels
    points = cloud_points(instance_3d.points)
    assert len(points) == instance_3d.valid_points
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1).astype(np.float64)
    u = np.round(FX * xyz[:, 0] / xyz[:, 2] + CX).astype(int)
    v = np.round(FY * xyz[:, 1] / xyz[:, 2] + CY).astype(int)
    assert mask[v, u].all()
    np.testing.assert_allclose(xyz[:, 2], DEPTH_MM[v, u] / 1000.0, atol=1e-6)
    centroid = instance_3d.centroid
    np.testing.assert_allclose(xyz.mean(axis=0), [centroid.x, centroid.y, centroid.z], atol=1e-4)


def test_prompts_come_back_in_3d_with_a_labelled_cloud(node):
    client = node.client
    client.publish(SECOND, SECOND + 5_000_000)  # depth 5 ms after colour: within the tolerance
    rows, cols = np.nonzero(RENDERED.mask(0))
    node.send_prompts([box_prompt("the-box", [cols.min(), rows.min(), cols.max(), rows.max()], stamp_ns=SECOND),
                       box_prompt("the-ball", [50, 60, 160, 170], stamp_ns=SECOND)])
    answers = node.answers_for({"the-box", "the-ball"})
    masks_2d = answers["the-box"][1]
    answer = client.answer_3d(SECOND)
    assert answer.header.frame_id == FRAME_ID and answer.depth_header.stamp.nanosec == 5_000_000
    assert list(answer.failed_instance_indices) == []
    assert sorted(i.instance_index for i in answer.instances) == list(range(len(masks_2d.instances)))
    assert len(answer.instances) >= 1
    for instance_3d in answer.instances:
        assert_consistent_with_2d(instance_3d, masks_2d.instances[instance_3d.instance_index])
    node.spin_until(lambda: any(_stamp(c) == SECOND for c in client.clouds), "the labelled cloud")
    cloud = next(c for c in client.clouds if _stamp(c) == SECOND)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "instance_id", "class_index"]
    points = cloud_points(cloud)
    ids, counts = np.unique(points["instance_id"], return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist())) == {i.instance_index: i.valid_points for i in answer.instances}
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1)
    u = np.round(FX * xyz[:, 0] / xyz[:, 2] + CX).astype(int)
    v = np.round(FY * xyz[:, 1] / xyz[:, 2] + CY).astype(int)
    packed = points["rgb"].view(np.uint32)
    np.testing.assert_array_equal(np.stack([packed >> 16 & 255, packed >> 8 & 255, packed & 255], axis=1), RGB[v, u])
    # RViz gets a wire box and a label at the object for each placed instance
    node.spin_until(lambda: any(m.header.stamp.sec == 1 for a in client.markers for m in a.markers), "3D markers")
    markers = next(a for a in client.markers if any(m.header.stamp.sec == 1 for m in a.markers)).markers
    placed = sorted(i.instance_index for i in answer.instances)
    assert sorted(m.id for m in markers if m.ns == "ovsam_boxes") == placed
    assert sorted(m.id for m in markers if m.ns == "ovsam_labels_3d") == placed


@pytest.mark.parametrize("case", ["stamp mismatch", "size mismatch"])
def test_unusable_depth_gives_2d_results_failures_and_a_diagnostic(node, case):
    client = node.client
    stamp = (2 if case == "stamp mismatch" else 3) * SECOND
    if case == "stamp mismatch":
        client.publish(stamp, stamp + 500_000_000)
        expected = "no depth image within 0.020 s"
    else:
        client.publish(stamp, stamp, depth_mm=np.ascontiguousarray(DEPTH_MM[::2, ::2]))
        expected = f"does not match the colour image {WIDTH}x{HEIGHT}"
    node.send_prompts([box_prompt(f"{case}-prompt", [100, 50, 250, 200], stamp_ns=stamp)])
    payload, masks_2d = node.answers_for({f"{case}-prompt"})[f"{case}-prompt"]
    assert not isinstance(payload, str), f"the 2D answer failed: {payload}"
    answer = client.answer_3d(stamp)
    assert len(answer.instances) == 0
    assert list(answer.failed_prompt_ids) == [f"{case}-prompt"] and list(answer.failed_instance_indices) == [0]
    assert expected in answer.failure_reasons[0]
    node.spin_until(lambda: any(expected in s.message and any(kv.key == "depth_unmatched" for kv in s.values)
                                for d in client.diagnostics for s in d.status),
                    "a diagnostic naming the depth problem", timeout=10)


def test_rviz_click_on_the_scene_comes_back_in_3d(node):
    client = node.client
    stamp = 4 * SECOND
    client.publish(stamp, stamp)
    target = RENDERED.surface_points(0).mean(axis=0)  # a point on the box, as RViz's Publish Point gives it
    click = PointStamped()
    click.header.frame_id = FRAME_ID
    click.point.x, click.point.y, click.point.z = (float(v) for v in target)
    client.clicks_pub.publish(click)
    node.spin_until(lambda: any(_stamp(a) == stamp and any(i.prompt_id.startswith("clicked_point-")
                                                           for i in a.instances) for a in client.answers_3d),
                    "the clicked object in 3D")
    answer = client.answer_3d(stamp)
    instance_3d = next(i for i in answer.instances if i.prompt_id.startswith("clicked_point-"))

    def matching_2d_result():
        return next((r for r in node.results if _stamp(r) == stamp and
                     any(i.prompt_id == instance_3d.prompt_id for i in r.instances)), None)

    # The 2D and 3D answers travel on separate topics: either may be delivered first.
    node.spin_until(lambda: matching_2d_result() is not None, "the clicked object's 2D masks")
    masks_2d = matching_2d_result()
    assert_consistent_with_2d(instance_3d, masks_2d.instances[instance_3d.instance_index])
    assert node.is_alive()


def test_bad_depth_encoding_is_rejected_and_counted(node):
    client = node.client
    client.depth_pub.publish(stamped(array_to_image(np.zeros((HEIGHT, WIDTH), np.uint8), "mono8"), 5 * SECOND))
    client.sent["depth_received"] += 1
    node.spin_until(lambda: any(kv.key == "depth_rejected" for d in client.diagnostics for s in d.status
                                for kv in s.values), "depth_rejected in the diagnostics", timeout=10)
    assert node.is_alive()



def _segment_request(prompts, image=None, depth=None, camera_info=None):
    from ovsam_ros.srv import Segment

    request = Segment.Request(prompts=prompts)
    if image is not None:
        request.image = image
    if depth is not None:
        request.depth = depth
    if camera_info is not None:
        request.camera_info = camera_info
    return Segment, request


def _assert_service_3d(response) -> None:
    assert response.success, response.message
    result, result_3d = response.result, response.result_3d
    assert result_3d.header == result.header and list(result_3d.failed_instance_indices) == []
    assert sorted(i.instance_index for i in result_3d.instances) == list(range(len(result.instances)))
    for instance_3d in result_3d.instances:
        assert_consistent_with_2d(instance_3d, result.instances[instance_3d.instance_index])
    assert f"{len(result_3d.instances)} placed in 3D" in response.message


def test_segment_service_answers_in_3d_with_the_received_depth(node):
    node.client.publish(6 * SECOND, 6 * SECOND)
    rows, cols = np.nonzero(RENDERED.mask(0))
    srv, request = _segment_request([box_prompt("svc-box", [cols.min(), rows.min(), cols.max(), rows.max()])])
    response = node.call(srv, "segment", request)  # the latest frame, paired with the depth sent beside it
    assert len(response.result.instances) >= 1
    _assert_service_3d(response)


def test_a_request_calibration_without_a_focal_length_gives_way_to_the_topics(node):
    """A request's K with fx but fy = 0 is no calibration (as camera_geometry.intrinsics says): the
    node places the answer with the calibration it received instead of failing every instance."""
    node.client.publish(8 * SECOND, 8 * SECOND)  # the node's own calibration, depth and frame
    broken = CameraInfo(width=WIDTH, height=HEIGHT, k=[FX, 0.0, CX, 0.0, 0.0, CY, 0.0, 0.0, 1.0])
    rows, cols = np.nonzero(RENDERED.mask(0))
    srv, request = _segment_request([box_prompt("svc-no-fy", [cols.min(), rows.min(), cols.max(), rows.max()])],
                                    depth=stamped(array_to_image(DEPTH_MM, "16UC1"), 8 * SECOND), camera_info=broken)
    response = node.call(srv, "segment", request)
    assert len(response.result.instances) >= 1, response.result.failure_reasons
    _assert_service_3d(response)


def test_segment_service_uses_the_depth_and_calibration_in_the_request(node):
    # The topic's calibration is another camera's (twice the focal length): points placed with it
    # would not project back onto the mask through the true K, which the checks below use.
    node.info_pub.publish(CameraInfo(width=WIDTH, height=HEIGHT, k=[2 * FX, 0.0, CX, 0.0, 2 * FY, CY, 0.0, 0.0, 1.0]))
    node.client.sent["camera_info_received"] += 1
    node.wait_counted("camera_info_received", node.client.sent["camera_info_received"])
    info = CameraInfo(width=WIDTH, height=HEIGHT, k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0],
                      distortion_model="plumb_bob", d=[0.0] * 5)
    image = stamped(array_to_image(RGB, "rgb8"), 77 * SECOND)  # a stamp no depth on the topic is near
    # The box of object 0, which these seeded weights segment on this image (the test above asserts it
    # on the same image through the topic's depth): the precondition is asserted, never skipped.
    rows, cols = np.nonzero(RENDERED.mask(0))
    box = [cols.min(), rows.min(), cols.max(), rows.max()]
    srv, request = _segment_request([box_prompt("svc-own-depth", box)], image=image,
                                    depth=stamped(array_to_image(DEPTH_MM, "16UC1"), 3 * SECOND), camera_info=info)
    response = node.call(srv, "segment", request)
    assert len(response.result.instances) >= 1, response.result.failure_reasons
    _assert_service_3d(response)
    # An unreadable depth image in the request: the 2D answer stands, every instance fails in 3D.
    srv, request = _segment_request([box_prompt("svc-bad-depth", box)], image=image,
                                    depth=stamped(array_to_image(np.zeros((HEIGHT, WIDTH), np.uint8), "mono8"),
                                                  3 * SECOND), camera_info=info)
    response = node.call(srv, "segment", request)
    assert response.success and len(response.result.instances) >= 1
    failed = response.result_3d
    assert len(failed.instances) == 0 and len(failed.failed_instance_indices) == len(response.result.instances)
    assert "the request's depth image is unusable: depth encoding 'mono8'" in failed.failure_reasons[0]
    assert node.is_alive()
