"""Clicks and labels go through the lens as the 3D instances do: `project_to_pixel` and `pixel_ray`
of a distorted CameraInfo agree with the ray table that places instances (built by OpenCV's
undistortPoints over the whole image), and with each other."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from ovsam_ros.camera_geometry import ProjectionError, pixel_ray, project_to_pixel
from ovsam_ros.depth_geometry import RayTable

WIDTH, HEIGHT, FX, FY, CX, CY = 640, 480, 525.0, 525.0, 319.5, 239.5
LENSES = [("plumb_bob", [-0.28, 0.07, 0.001, -0.0005, 0.0]), ("equidistant", [0.05, -0.01, 0.002, -0.001])]


def camera_info(model: str = "", d: list[float] | None = None) -> SimpleNamespace:
    return SimpleNamespace(k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0], distortion_model=model, d=d or [],
                           width=WIDTH, height=HEIGHT)


@pytest.mark.parametrize("model, d", LENSES)
def test_a_point_on_a_pixels_ray_projects_back_to_that_pixel(model, d) -> None:
    info = camera_info(model, d)
    rays = RayTable.from_calibration(WIDTH, HEIGHT, FX, FY, CX, CY, model, d)
    for u, v in [(20, 20), (160, 120), (320, 240), (600, 450), (5, 470)]:
        depth = 1.7
        point = (rays.x[v, u] * depth, rays.y[v, u] * depth, depth)  # what the 3D instances would publish
        assert project_to_pixel(*point, info) == pytest.approx((u, v), abs=0.01)
        assert pixel_ray(u, v, info, depth) == pytest.approx(point, rel=1e-4, abs=1e-5)


def test_the_distortion_matters_where_the_lens_bends_most() -> None:
    # Without the lens, the ray of the corner pixel (20, 20) would be sent to about (-39, -24),
    # outside the image: a click on that object would fail.
    model, d = LENSES[0]
    rays = RayTable.from_calibration(WIDTH, HEIGHT, FX, FY, CX, CY, model, d)
    point = (rays.x[20, 20], rays.y[20, 20], 1.0)
    pinhole_u, pinhole_v = project_to_pixel(*point, camera_info())
    assert pinhole_u < 0 and pinhole_v < 0
    assert project_to_pixel(*point, camera_info(model, d)) == pytest.approx((20, 20), abs=0.01)


def test_no_or_zero_distortion_is_the_pinhole_camera() -> None:
    for info in (camera_info(), camera_info("plumb_bob", [0.0] * 5)):
        assert project_to_pixel(0.1, -0.2, 2.0, info) == pytest.approx((FX * 0.05 + CX, FY * -0.1 + CY))
        assert pixel_ray(CX + FX, CY, info, 3.0) == pytest.approx((3.0, 0.0, 3.0))


def test_an_unusable_lens_is_a_projection_error() -> None:
    for info in (camera_info("weird", [0.1, 0, 0, 0, 0]), camera_info("equidistant", [0.1, 0, 0, 0, 0]),
                 camera_info("plumb_bob", [float("nan"), 0, 0, 0, 0])):
        with pytest.raises(ProjectionError):
            project_to_pixel(0.1, 0.1, 1.0, info)
        with pytest.raises(ProjectionError):
            pixel_ray(10.0, 10.0, info)
