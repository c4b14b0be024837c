"""Pairing depth with colour frames (stamp tolerance, registration by size) and placing a whole
answer's instances in 3D, without ROS: every instance is placed or fails with a reason."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsam_ros.depth_fusion import DepthBuffer, DepthFusion, DepthUnavailable
from ovsam_ros.depth_image import DepthError, depth_from_array, depth_from_msg
from ovsam_ros.image_conversion import ImageConversionError
from tests.node.depth_scenes import CX, CY, FX, FY, HEIGHT, WIDTH, default_scene

SECOND = 1_000_000_000
BOX, SPHERE = 0, 1


def camera_info(width: int = WIDTH, height: int = HEIGHT, d=(), model: str = "plumb_bob"):
    return SimpleNamespace(width=width, height=height, k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0], d=list(d),
                           distortion_model=model)


def frame(stamp_ns: int, width: int = WIDTH, height: int = HEIGHT):
    return SimpleNamespace(stamp_ns=stamp_ns, width=width, height=height)


def instance(mask: np.ndarray, prompt_id: str):
    rows, cols = np.nonzero(mask)
    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1) if rows.size else None
    return SimpleNamespace(prediction=SimpleNamespace(mask=mask, box=box, prompt_id=prompt_id), track_id=0)


@pytest.fixture(scope="module")
def scene():
    return default_scene()


@pytest.fixture
def answer(scene):
    _, rendered = scene
    return [instance(rendered.mask(BOX), "box"), instance(rendered.mask(SPHERE), "sphere")]


def millimetre_depth(rendered, stamp_ns: int):
    return depth_from_array(np.round(rendered.depth * 1000).astype(np.uint16), "16UC1", stamp_ns)


def test_buffer_pairs_the_nearest_depth_within_the_tolerance():
    buffer = DepthBuffer(capacity=3)
    with pytest.raises(DepthUnavailable, match="no depth image received yet"):
        buffer.match(SECOND, 4, 6, 0.02)
    for stamp in (SECOND, SECOND + 33_000_000, SECOND + 66_000_000):
        buffer.add(depth_from_array(np.zeros((4, 6), np.float32), "32FC1", stamp))
    assert buffer.match(SECOND + 30_000_000, 4, 6, 0.02).stamp_ns == SECOND + 33_000_000
    assert buffer.match(SECOND - 15_000_000, 4, 6, 0.02).stamp_ns == SECOND
    with pytest.raises(DepthUnavailable, match=r"within 0.020 s .* 0.434 s away"):
        buffer.match(SECOND + 500_000_000, 4, 6, 0.02)
    assert buffer.match(SECOND + 500_000_000, 4, 6, 0.5).stamp_ns == SECOND + 66_000_000
    buffer.add(depth_from_array(np.zeros((4, 6), np.float32), "32FC1", 2 * SECOND))  # evicts the oldest
    with pytest.raises(DepthUnavailable, match="no depth image within"):
        buffer.match(SECOND, 4, 6, 0.02)


def test_buffer_refuses_depth_of_another_size():
    buffer = DepthBuffer()
    buffer.add(depth_from_array(np.zeros((240, 320), np.uint16), "16UC1", SECOND))
    with pytest.raises(DepthUnavailable,
                       match=r"depth image 320x240 does not match the colour image 640x480.*registered"):
        buffer.match(SECOND, 480, 640, 0.02)


def test_depth_units_and_encodings():
    raw = np.array([[0, 1000, 1500]], np.uint16)
    np.testing.assert_allclose(depth_from_array(raw, "16UC1", 0).metres(), [[0.0, 1.0, 1.5]])
    metres = np.array([[np.nan, 1.0, 1.5]], np.float32)
    np.testing.assert_array_equal(depth_from_array(metres, "32FC1", 0).metres(), metres)
    with pytest.raises(DepthError, match="16UC1 .*32FC1"):
        depth_from_array(np.zeros((2, 2), np.uint8), "mono8", 0)
    with pytest.raises(DepthError, match="one channel"):
        depth_from_array(np.zeros((2, 2, 3), np.float32), "32FC1", 0)


def test_depth_message_is_read_in_place_with_its_stamp():
    pixels = np.array([[500, 0], [1200, 65535]], np.uint16)
    msg = SimpleNamespace(encoding="16UC1", height=2, width=2, step=4, is_bigendian=0, data=pixels.tobytes(),
                          header=SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=7), frame_id="camera"))
    depth = depth_from_msg(msg)
    assert depth.stamp_ns == 3 * SECOND + 7 and depth.header.frame_id == "camera"
    np.testing.assert_allclose(depth.metres(), pixels * 0.001, rtol=1e-6)
    msg.encoding = "rgb8"
    with pytest.raises(DepthError, match="'rgb8' is not supported"):
        depth_from_msg(msg)


def test_answer_placed_in_3d_from_millimetres(scene, answer):
    objects, rendered = scene
    fusion = DepthFusion()
    fusion.add(millimetre_depth(rendered, SECOND + 5_000_000))
    result = fusion.locate(frame(SECOND), answer, camera_info(), tolerance_s=0.02)
    assert result.problem == "" and result.failures == []
    assert [located.index for located in result.located] == [0, 1]
    assert result.depth.stamp_ns == SECOND + 5_000_000
    box = result.located[BOX].geometry.box
    assert np.linalg.norm(box.center - np.asarray(objects[BOX].center)) < 0.01
    sphere_points = result.located[SPHERE].geometry.points
    assert np.abs(np.linalg.norm(sphere_points - objects[SPHERE].center, axis=1) - objects[SPHERE].radius).max() < 0.003


@pytest.mark.parametrize("case, expected", [
    ("stamp", "no depth image within 0.020 s"),
    ("depth size", "does not match the colour image"),
    ("camera_info size", "camera_info is for 640x480 images but the colour image is 320x240"),
    ("no camera_info", "no camera_info received"),
    ("uncalibrated", "no valid intrinsics"),
])
def test_frame_without_usable_depth_fails_every_instance_with_the_reason(scene, answer, case, expected):
    _, rendered = scene
    fusion = DepthFusion()
    info = camera_info()
    depth = millimetre_depth(rendered, SECOND)
    if case == "stamp":
        depth = millimetre_depth(rendered, SECOND + 100_000_000)
    elif case == "depth size":
        depth = depth_from_array(np.zeros((HEIGHT // 2, WIDTH // 2), np.uint16), "16UC1", SECOND)
    elif case == "camera_info size":
        info = camera_info(640, 480)
    elif case == "no camera_info":
        info = None
    elif case == "uncalibrated":
        info.k = [0.0] * 9
    fusion.add(depth)
    result = fusion.locate(frame(SECOND), answer, info, tolerance_s=0.02)
    assert result.located == [] and result.depth is None
    assert [(f.index, f.prompt_id) for f in result.failures] == [(0, "box"), (1, "sphere")]
    assert all(expected in f.reason for f in result.failures)
    assert expected in result.problem


def test_one_instance_without_depth_fails_alone(scene, answer):
    _, rendered = scene
    depth = rendered.depth.astype(np.float32)
    depth[rendered.mask(SPHERE)] = np.nan  # e.g. a black or shiny object the sensor cannot see
    fusion = DepthFusion()
    fusion.add(depth_from_array(depth, "32FC1", SECOND))
    result = fusion.locate(frame(SECOND), answer, camera_info(), tolerance_s=0.02)
    assert [located.index for located in result.located] == [BOX]
    assert [(f.index, f.prompt_id) for f in result.failures] == [(SPHERE, "sphere")]
    assert "have valid depth" in result.failures[0].reason and result.problem == ""


def test_ray_table_is_rebuilt_only_when_the_calibration_changes(scene, answer):
    _, rendered = scene
    fusion = DepthFusion()
    first = fusion.rays_for(camera_info(), WIDTH, HEIGHT)
    assert fusion.rays_for(camera_info(), WIDTH, HEIGHT) is first
    distorted = fusion.rays_for(camera_info(d=(-0.2, 0.05, 0.0, 0.0, 0.0)), WIDTH, HEIGHT)
    assert distorted is not first and not np.allclose(distorted.x, first.x)


@settings(max_examples=150, deadline=None)
@given(encoding=st.sampled_from(["16UC1", "32FC1", "mono16", "rgb8", "8UC1", ""]), height=st.integers(-1, 6),
       width=st.integers(-1, 6), step=st.integers(0, 40), bigendian=st.booleans(), data=st.binary(max_size=200))
def test_any_depth_message_is_read_or_refused_with_a_reason(encoding, height, width, step, bigendian, data):
    msg = SimpleNamespace(encoding=encoding, height=height, width=width, step=step, is_bigendian=bigendian, data=data,
                          header=SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=2)))
    try:
        depth = depth_from_msg(msg)
    except (DepthError, ImageConversionError) as error:
        assert str(error)
        return
    assert depth.raw.shape == (height, width) and depth.metres().dtype == np.float32


def test_the_nodes_depth_parameters_reach_the_geometry(scene, answer):
    from ovsam_ros.settings import NodeSettings

    _, rendered = scene
    near_only = DepthFusion(NodeSettings(depth_max_m=0.5).geometry())  # the scene lies about 1 m away
    near_only.add(millimetre_depth(rendered, SECOND))
    result = near_only.locate(frame(SECOND), answer, camera_info(), tolerance_s=0.02)
    assert result.located == [] and len(result.failures) == 2
    pca = DepthFusion(NodeSettings(box_orientation="pca", depth_trim="percentile").geometry())
    assert (pca.settings.box_orientation, pca.settings.trim) == ("pca", "percentile")
    pca.add(millimetre_depth(rendered, SECOND))
    assert len(pca.locate(frame(SECOND), answer, camera_info(), tolerance_s=0.02).located) == 2
