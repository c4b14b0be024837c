"""3D geometry of masks on depth images of known geometry (ray-cast box and sphere about 1 m away):
centroid within 1 cm, box sizes within 2 cm, with holes, NaN, bleeding masks and both depth units."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ovsam_ros.depth_geometry import (
    DepthScene,
    GeometryError,
    GeometrySettings,
    RayTable,
    rotation_to_quaternion,
    upright_box,
)
from tests.node.depth_scenes import (
    CX,
    CY,
    FX,
    FY,
    HEIGHT,
    WIDTH,
    Box,
    Sphere,
    default_scene,
    render,
    yaw_about_vertical,
)

CENTROID_TOLERANCE_M = 0.01
SIZE_TOLERANCE_M = 0.02
BOX, SPHERE = 0, 1


@pytest.fixture(scope="module")
def scene():
    return default_scene()


@pytest.fixture(scope="module")
def rays():
    return RayTable.from_calibration(WIDTH, HEIGHT, FX, FY, CX, CY)


def metres(depth: np.ndarray) -> np.ndarray:
    return depth.astype(np.float32)


def millimetres(depth: np.ndarray) -> np.ndarray:
    return np.round(depth * 1000.0).astype(np.uint16)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    import cv2

    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def assert_box_matches(geometry, box: Box) -> None:
    """The oriented box has the true centre and edge lengths, with its first axis along the box's longest."""
    assert np.linalg.norm(geometry.box.center - np.asarray(box.center)) < CENTROID_TOLERANCE_M
    true_size = np.asarray(box.size)
    # upright boxes list the longer horizontal edge first, then the shorter, then the vertical one
    expected = np.array([max(true_size[0], true_size[2]), min(true_size[0], true_size[2]), true_size[1]])
    np.testing.assert_allclose(geometry.box.size, expected, atol=SIZE_TOLERANCE_M)
    assert abs(geometry.box.rotation[:, 0] @ box.rotation[:, 0]) > math.cos(math.radians(3))


def test_box_at_one_metre(scene, rays):
    objects, rendered = scene
    geometry = DepthScene(metres(rendered.depth), rays).instance(rendered.mask(BOX))
    assert_box_matches(geometry, objects[BOX])
    surface = rendered.surface_points(BOX)
    assert np.linalg.norm(geometry.centroid - surface.mean(axis=0)) < CENTROID_TOLERANCE_M
    np.testing.assert_allclose(geometry.aabb_min, surface.min(axis=0), atol=CENTROID_TOLERANCE_M)
    np.testing.assert_allclose(geometry.aabb_max, surface.max(axis=0), atol=CENTROID_TOLERANCE_M)
    assert geometry.valid_points == geometry.depth_pixels == geometry.mask_pixels == rendered.mask(BOX).sum()
    # the rotation is proper and the box holds every point
    assert np.linalg.det(geometry.box.rotation) == pytest.approx(1.0)
    local = (geometry.points - geometry.box.center) @ geometry.box.rotation
    assert np.all(np.abs(local) <= geometry.box.size / 2 + 1e-4)


def test_sphere_at_one_metre(scene, rays):
    objects, rendered = scene
    sphere: Sphere = objects[SPHERE]
    geometry = DepthScene(metres(rendered.depth), rays).instance(rendered.mask(SPHERE))
    assert np.linalg.norm(geometry.centroid - rendered.surface_points(SPHERE).mean(axis=0)) < CENTROID_TOLERANCE_M
    # the centroid is of the visible cap: about 2/3 of the radius in front of the centre
    assert np.linalg.norm(geometry.centroid - (np.asarray(sphere.center) - [0, 0, 2 * sphere.radius / 3])) < 0.012
    distances = np.linalg.norm(geometry.points - np.asarray(sphere.center), axis=1)
    assert np.all(np.abs(distances - sphere.radius) < 0.002)
    extent = geometry.aabb_max - geometry.aabb_min
    np.testing.assert_allclose(extent[:2], [2 * sphere.radius] * 2, atol=SIZE_TOLERANCE_M)
    assert extent[2] == pytest.approx(sphere.radius, abs=SIZE_TOLERANCE_M)  # only the front half is seen


def test_box_seen_from_the_side_only(rays):
    """Two side faces and no top: the footprint's hull is a right triangle; the box is still found."""
    box = Box(center=(0.05, 0.0, 1.0), size=(0.20, 0.12, 0.10), rotation=yaw_about_vertical(math.radians(40)))
    rendered = render([box])
    geometry = DepthScene(metres(rendered.depth), rays).instance(rendered.mask(0))
    assert_box_matches(geometry, box)


@pytest.mark.parametrize("turn_deg", [0, 17, 45, 73])
def test_upright_box_of_two_walls_is_their_rectangle_not_the_diagonal_one(turn_deg):
    """Points on two adjacent walls (an L footprint): the rectangle along the hypotenuse has the same
    area as the true one, and must lose."""
    t = np.linspace(0.0, 1.0, 200)[:, None]
    footprint = np.concatenate([t * [0.2, 0.0], t * [0.0, 0.1]])
    turn = math.radians(turn_deg)
    footprint = footprint @ np.array([[math.cos(turn), math.sin(turn)], [-math.sin(turn), math.cos(turn)]])
    points = np.zeros((2 * len(footprint), 3))
    points[:, [0, 2]] = np.tile(footprint, (2, 1))
    points[:, 1] = np.repeat([0.0, -0.1], len(footprint))  # 10 cm tall walls (y is down)
    box = upright_box(points.astype(np.float32), points.mean(axis=0), np.array([0.0, -1.0, 0.0]))
    np.testing.assert_allclose(box.size, [0.2, 0.1, 0.1], atol=1e-3)


def test_masks_bleeding_onto_the_background_are_trimmed(scene, rays):
    objects, rendered = scene
    bleeding = dilate(rendered.mask(BOX), 3)
    assert (rendered.object_id[bleeding] == 0).sum() > 300  # many wall pixels, 0.6 m behind the box
    trimmed = DepthScene(metres(rendered.depth), rays).instance(bleeding)
    assert_box_matches(trimmed, objects[BOX])
    assert trimmed.valid_points == rendered.mask(BOX).sum() < trimmed.depth_pixels
    untrimmed = DepthScene(metres(rendered.depth), rays, GeometrySettings(trim="none")).instance(bleeding)
    assert untrimmed.box.size[2] > objects[BOX].size[1] + SIZE_TOLERANCE_M  # without trimming the wall pulls it
    sphere = DepthScene(metres(rendered.depth), rays).instance(dilate(rendered.mask(SPHERE), 3))
    assert sphere.valid_points == rendered.mask(SPHERE).sum()


def test_percentile_trimming_drops_scattered_flying_pixels(scene, rays):
    objects, rendered = scene
    depth = metres(rendered.depth)
    mask = rendered.mask(SPHERE)
    rows, cols = np.nonzero(mask)
    rng = np.random.default_rng(0)
    chosen = rng.choice(rows.size, size=rows.size // 100, replace=False)
    depth[rows[chosen], cols[chosen]] = rng.uniform(0.3, 3.0, chosen.size)  # mixed pixels at any depth
    settings = GeometrySettings(trim="percentile", percentiles=(2.0, 98.0))
    geometry = DepthScene(depth, rays, settings).instance(mask)
    sphere = objects[SPHERE]
    assert np.linalg.norm(geometry.centroid - rendered.surface_points(SPHERE).mean(axis=0)) < CENTROID_TOLERANCE_M
    assert geometry.aabb_max[2] - geometry.aabb_min[2] < sphere.radius + SIZE_TOLERANCE_M
    raw = DepthScene(depth, rays, GeometrySettings(trim="none")).instance(mask)
    assert raw.aabb_max[2] - raw.aabb_min[2] > 1.0


@pytest.mark.parametrize("unit", ["m", "mm"])
def test_holes_nan_infinity_and_out_of_range_depth_are_ignored(scene, rays, unit):
    objects, rendered = scene
    rng = np.random.default_rng(1)
    corrupt = rng.random((HEIGHT, WIDTH)) < 0.3
    if unit == "m":
        depth = metres(rendered.depth)
        bad_values = np.array([0.0, np.nan, np.inf, -np.inf, -1.0, 0.05, 25.0], dtype=np.float32)
    else:
        depth = millimetres(rendered.depth)
        bad_values = np.array([0, 50, 25000, 65535], dtype=np.uint16)  # holes, too near, too far
    depth[corrupt] = rng.choice(bad_values, corrupt.sum())
    scene_3d = DepthScene(depth, rays, metres_per_unit=0.001 if unit == "mm" else 1.0)
    for index in (BOX, SPHERE):
        mask = rendered.mask(index)
        geometry = scene_3d.instance(mask)
        assert geometry.mask_pixels == mask.sum()
        assert geometry.depth_pixels == geometry.valid_points == (mask & ~corrupt).sum()
        assert np.all(np.isfinite(geometry.points))
        assert np.linalg.norm(geometry.centroid - rendered.surface_points(index).mean(axis=0)) < CENTROID_TOLERANCE_M
    assert_box_matches(scene_3d.instance(rendered.mask(BOX)), objects[BOX])


def test_millimetres_and_metres_agree(scene, rays):
    _, rendered = scene
    in_metres = DepthScene(metres(rendered.depth), rays)
    in_millimetres = DepthScene(millimetres(rendered.depth), rays, metres_per_unit=0.001)
    for index in (BOX, SPHERE):
        a, b = in_metres.instance(rendered.mask(index)), in_millimetres.instance(rendered.mask(index))
        assert np.linalg.norm(a.centroid - b.centroid) < 0.001
        np.testing.assert_allclose(a.box.size, b.box.size, atol=0.002)


def test_zero_depth_is_never_valid_even_with_no_minimum(scene, rays):
    _, rendered = scene
    mask = rendered.mask(SPHERE)
    holes = mask & (np.arange(mask.size).reshape(mask.shape) % 3 == 0)
    no_minimum = GeometrySettings(min_depth_m=0.0)
    for depth, unit in ((millimetres(rendered.depth), 0.001), (metres(rendered.depth), 1.0)):
        depth[holes] = 0
        geometry = DepthScene(depth, rays, no_minimum, metres_per_unit=unit).instance(mask)
        assert geometry.depth_pixels == (mask & ~holes).sum()


def test_box_limits_the_work_but_not_the_answer(scene, rays):
    _, rendered = scene
    mask = rendered.mask(BOX)
    rows, cols = np.nonzero(mask)
    box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    scene_3d = DepthScene(metres(rendered.depth), rays)
    without = scene_3d.instance(mask)
    np.testing.assert_array_equal(np.sort(without.pixel_index), np.flatnonzero(mask))
    height, width = mask.shape
    # The tight box, a looser one and one past the image's edges (clipped) all give the whole answer.
    for given in (box, (box[0] - 7, box[1] - 3, box[2] + 5, box[3] + 9), (-20, -20, width + 20, height + 20)):
        with_box = scene_3d.instance(mask, given)
        np.testing.assert_array_equal(np.sort(with_box.pixel_index), np.sort(without.pixel_index))
        np.testing.assert_allclose(with_box.centroid, without.centroid, rtol=1e-12, atol=1e-12)


def test_principal_axes_box_follows_a_tilted_rod(rays):
    pitch = math.radians(35)
    tilt = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    rotation = tilt @ yaw_about_vertical(math.radians(20))
    rod = Box(center=(0.0, 0.05, 1.0), size=(0.30, 0.03, 0.03), rotation=rotation)
    rendered = render([rod])
    scene = DepthScene(metres(rendered.depth), rays, GeometrySettings(box_orientation="pca"))
    geometry = scene.instance(rendered.mask(0))
    assert abs(geometry.box.rotation[:, 0] @ rotation[:, 0]) > math.cos(math.radians(3))
    assert geometry.box.size[0] == pytest.approx(0.30, abs=SIZE_TOLERANCE_M)
    assert np.linalg.norm(geometry.box.center - np.asarray(rod.center)) < CENTROID_TOLERANCE_M + 0.015 / 2
    assert np.linalg.det(geometry.box.rotation) == pytest.approx(1.0)


def test_too_few_valid_pixels_is_an_error_with_counts(scene, rays):
    _, rendered = scene
    depth = metres(rendered.depth)
    depth[rendered.mask(SPHERE)] = np.nan
    with pytest.raises(GeometryError, match=rf"only 0 of {rendered.mask(SPHERE).sum()} mask pixels have valid depth"):
        DepthScene(depth, rays).instance(rendered.mask(SPHERE))
    with pytest.raises(GeometryError, match="does not match the depth image"):
        DepthScene(depth, rays).instance(np.ones((10, 10), bool))


def test_distorted_rays_invert_opencv_projection():
    import cv2

    camera = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1.0]])
    cases = [("plumb_bob", np.array([-0.28, 0.07, 0.001, -0.0005, 0.0]), cv2.projectPoints),
             ("equidistant", np.array([0.05, -0.01, 0.002, -0.001]), cv2.fisheye.projectPoints)]
    v, u = np.mgrid[0:HEIGHT:17, 0:WIDTH:23]
    for model, coefficients, project in cases:
        rays = RayTable.from_calibration(WIDTH, HEIGHT, FX, FY, CX, CY, model, coefficients)
        points = np.stack([rays.x[v, u].ravel(), rays.y[v, u].ravel(), np.ones(u.size)], axis=1) * 1.3
        if model == "equidistant":
            pixels, _ = project(points.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), camera, coefficients)
        else:
            pixels, _ = project(points, np.zeros(3), np.zeros(3), camera, coefficients)
        np.testing.assert_allclose(pixels.reshape(-1, 2), np.stack([u.ravel(), v.ravel()], axis=1), atol=0.01)
        pinhole = RayTable.from_calibration(WIDTH, HEIGHT, FX, FY, CX, CY)
        assert np.abs(rays.x - pinhole.x).max() > 0.01  # the distortion did matter
    with pytest.raises(GeometryError, match="distortion model 'weird'"):
        RayTable.from_calibration(WIDTH, HEIGHT, FX, FY, CX, CY, "weird", [0.1, 0, 0, 0, 0])


def test_quaternions_reproduce_rotations():
    angle = math.radians(30)
    expected = (0, math.sin(angle / 2), 0, math.cos(angle / 2))
    assert rotation_to_quaternion(yaw_about_vertical(angle)) == pytest.approx(expected)
    rng = np.random.default_rng(2)
    for _ in range(50):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        x, y, z, w = rotation_to_quaternion(q)
        rebuilt = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        np.testing.assert_allclose(rebuilt, q, atol=1e-9)


def test_settings_are_validated():
    for bad in (dict(min_depth_m=2.0, max_depth_m=1.0), dict(trim="median"), dict(box_orientation="fancy"),
                dict(cluster_gap_m=0.0), dict(percentiles=(50.0, 10.0)), dict(up=(0.0, 0.0, 0.0)), dict(min_points=0)):
        with pytest.raises(ValueError):
            GeometrySettings(**bad).validate()
