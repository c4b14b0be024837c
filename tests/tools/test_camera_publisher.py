"""The built-in camera's calibration (`pinhole_info`) in ROS's pixel-centre convention, the one
`camera_geometry` reads K in: the optical axis passes through the middle of the image, so pixels
mirrored about the middle see mirrored rays."""
from __future__ import annotations

import pytest

from ovsam_ros.camera_geometry import pixel_ray
from ovsam_ros.tools.camera_publisher import pinhole_info


@pytest.mark.parametrize("width, height", [(640, 480), (64, 48), (33, 17)])
def test_pixels_mirrored_about_the_image_middle_see_mirrored_rays(width: int, height: int) -> None:
    info = pinhole_info(width, height, "camera")
    assert pixel_ray((width - 1) / 2, (height - 1) / 2, info) == pytest.approx((0.0, 0.0, 1.0), abs=1e-12)
    for u, v in [(0, 0), (3, height - 1), (width - 1, 5)]:
        x, y, _ = pixel_ray(u, v, info)
        mirrored_x, mirrored_y, _ = pixel_ray(width - 1 - u, height - 1 - v, info)
        assert (mirrored_x, mirrored_y) == pytest.approx((-x, -y), abs=1e-12)
    # The projection matrix has the same principal point as K.
    assert (info.p[2], info.p[6]) == (info.k[2], info.k[5])
