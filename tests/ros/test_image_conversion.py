"""Image messages <-> numpy: every supported encoding, padded rows, byte order, and bad messages."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from ovsam_model.image_input import as_rgb_uint8
from ovsam_ros.image_conversion import (
    ImageConversionError,
    array_to_image,
    compressed_to_rgb,
    image_to_array,
    image_to_rgb,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def raw_image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image whose rows carry `pad` extra bytes, as some drivers send."""
    data = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = data.reshape(pixels.shape[0], -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], axis=1)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                is_bigendian=int(bigendian), step=rows.shape[1])
    payload = array.array("B")
    payload.frombytes(rows.tobytes())
    msg.data = payload
    return msg


@pytest.mark.parametrize("pad", [0, 3])
def test_colour_orders_give_rgb(pad):
    assert np.array_equal(image_to_rgb(raw_image(RGB, "rgb8", pad)), RGB)
    assert np.array_equal(image_to_rgb(raw_image(RGB[..., ::-1].copy(), "bgr8", pad)), RGB)
    assert np.array_equal(image_to_rgb(raw_image(RGB[..., ::-1].copy(), "8UC3", pad)), RGB)
    rgba = np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(raw_image(rgba, "rgba8", pad)), RGB)
    bgra = np.concatenate([RGB[..., ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(raw_image(np.ascontiguousarray(bgra), "bgra8", pad)), RGB)


def test_rgb8_is_a_view_of_the_message_buffer():
    msg = raw_image(RGB, "rgb8")
    pixels = image_to_rgb(msg)
    assert not pixels.flags.owndata and np.shares_memory(pixels, np.frombuffer(msg.data, np.uint8))


def test_grey_and_16_bit():
    grey = RGB[..., 0].copy()
    out = image_to_rgb(raw_image(grey, "mono8"))
    assert out.shape == (5, 7, 3) and np.array_equal(out[..., 1], grey)
    deep = grey.astype(np.uint16) * 256 + 17
    for bigendian in (False, True):
        msg = raw_image(deep, "mono16", pad=2, bigendian=bigendian)
        assert np.array_equal(image_to_array(msg), deep)
        # The library's rule (ovsam_model.image_input.to_uint8): value * 255 / 65535, rounded.
        expected = np.rint(deep * (255.0 / 65535.0)).astype(np.uint8)
        assert np.array_equal(image_to_rgb(msg)[..., 2], expected)
        assert np.array_equal(image_to_rgb(msg), as_rgb_uint8(deep))


def test_float_images_follow_the_library_rule():
    intensity = RNG.uniform(0.0, 40.0, size=(4, 6)).astype(np.float32)
    assert np.array_equal(image_to_rgb(raw_image(intensity, "32FC1")), as_rgb_uint8(intensity))
    unit = RNG.uniform(0.0, 1.0, size=(4, 6)).astype(np.float32)
    assert np.array_equal(image_to_rgb(raw_image(unit, "32FC1"))[..., 0], np.rint(unit * 255).astype(np.uint8))
    with pytest.raises(ImageConversionError, match="negative"):
        image_to_rgb(raw_image(-unit, "32FC1"))


def test_depth_32f_reads_metres():
    depth = RNG.uniform(0.2, 4.0, size=(4, 6)).astype(np.float32)
    assert np.array_equal(image_to_array(raw_image(depth, "32FC1")), depth)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: setattr(m, "encoding", "yuv422_yuy2"), "unsupported image encoding"),
    (lambda m: setattr(m, "encoding", ""), "unsupported image encoding"),
    (lambda m: setattr(m, "height", 0), "zero size"),
    (lambda m: setattr(m, "width", 0), "zero size"),
    (lambda m: setattr(m, "step", 5), "step 5 is smaller"),
    (lambda m: setattr(m, "height", 50), "data has"),
    (lambda m: setattr(m, "width", 20000), "limit"),
])
def test_malformed_messages_raise_clear_errors(mutate, message):
    msg = raw_image(RGB, "rgb8")
    mutate(msg)
    with pytest.raises(ImageConversionError, match=message):
        image_to_rgb(msg)


def test_nan_float_image_is_rejected_for_colour_use():
    depth = np.full((3, 3), np.nan, np.float32)
    with pytest.raises(ImageConversionError, match="NaN"):
        image_to_rgb(raw_image(depth, "32FC1"))


def test_compressed_round_trip_and_garbage():
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    assert ok
    msg = CompressedImage(format="png")
    msg.data = array.array("B", png.tobytes())
    assert np.array_equal(compressed_to_rgb(msg), RGB)
    msg.data = array.array("B", b"not an image at all")
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_to_rgb(msg)
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_rgb(CompressedImage(format="jpeg"))


def test_array_to_image_round_trip():
    msg = array_to_image(RGB, "rgb8")
    assert (msg.width, msg.height, msg.step, msg.encoding) == (7, 5, 21, "rgb8")
    assert np.array_equal(image_to_rgb(msg), RGB)
    mask = array_to_image((RGB[..., 0] > 128).astype(np.uint8) * 255, "mono8")
    assert set(np.unique(image_to_array(mask))) <= {0, 255}
    with pytest.raises(ImageConversionError, match="does not fit"):
        array_to_image(RGB, "mono8")
