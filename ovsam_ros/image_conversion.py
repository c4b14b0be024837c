"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge (not installable from PyPI).

Incoming data is viewed in place (np.frombuffer over the message buffer, row stride honoured); only
a colour-order or dtype change copies. Every malformed message raises ImageConversionError with a
message that says what is wrong, so the node can report it and carry on.
"""
from __future__ import annotations

import array
from typing import Any

import numpy as np

from ovsam_model.image_input import ImageError, to_uint8

# encoding -> (dtype, channels, channel order for colour conversion)
ENCODINGS: dict[str, tuple[np.dtype, int, str]] = {
    "rgb8": (np.dtype(np.uint8), 3, "rgb"),
    "bgr8": (np.dtype(np.uint8), 3, "bgr"),
    "rgba8": (np.dtype(np.uint8), 4, "rgba"),
    "bgra8": (np.dtype(np.uint8), 4, "bgra"),
    "mono8": (np.dtype(np.uint8), 1, "mono"),
    "mono16": (np.dtype(np.uint16), 1, "mono"),
    "8UC1": (np.dtype(np.uint8), 1, "mono"),
    # OpenCV's convention, which cv_bridge follows: 3- and 4-channel 8-bit images are BGR(A).
    "8UC3": (np.dtype(np.uint8), 3, "bgr"),
    "8UC4": (np.dtype(np.uint8), 4, "bgra"),
    "16UC1": (np.dtype(np.uint16), 1, "mono"),
    "32FC1": (np.dtype(np.float32), 1, "mono"),
}

# Larger frames are refused rather than allocated: no camera here is bigger, and a corrupt header
# claiming 100k x 100k must not take the node's memory.
MAX_SIDE = 16384
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024


class ImageConversionError(ValueError):
    """The message cannot be read as an image; the text says why."""


def image_to_array(msg: Any) -> np.ndarray:
    """View a sensor_msgs/Image as an (H, W) or (H, W, C) array of its own dtype (no copy when possible)."""
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise ImageConversionError(
            f"unsupported image encoding '{encoding}'; supported: {', '.join(sorted(ENCODINGS))}")
    dtype, channels, _ = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has zero size ({width}x{height})")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ImageConversionError(f"image {width}x{height} exceeds the {MAX_SIDE} px limit per side")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*channels*bytes = {row_bytes} for {encoding} {width}x{height}")
    if step % dtype.itemsize:
        raise ImageConversionError(f"step {step} is not a multiple of the {dtype.itemsize}-byte pixel type")
    data = msg.data
    if len(data) < step * height:
        raise ImageConversionError(
            f"data has {len(data)} bytes, but step*height = {step * height} are needed for {width}x{height}")
    order = ">" if msg.is_bigendian else "<"
    rows = np.frombuffer(data, dtype=dtype.newbyteorder(order), count=step * height // dtype.itemsize)
    rows = rows.reshape(height, step // dtype.itemsize)[:, : width * channels]
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)
    # Multi-byte pixels from a big-endian sender are swapped once into native order.
    return pixels if pixels.dtype.isnative else pixels.astype(dtype)


def image_to_rgb(msg: Any) -> np.ndarray:
    """A colour or grey sensor_msgs/Image as an (H, W, 3) uint8 RGB array, the model's input."""
    pixels = image_to_array(msg)
    _, _, order = ENCODINGS[str(msg.encoding)]
    return _to_rgb8(pixels, order)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg, png, ...) to (H, W, 3) uint8 RGB."""
    import cv2

    data = msg.data
    if len(data) == 0:
        raise ImageConversionError("compressed image has no data")
    if len(data) > MAX_COMPRESSED_BYTES:
        raise ImageConversionError(f"compressed image of {len(data)} bytes exceeds {MAX_COMPRESSED_BYTES}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageConversionError(f"cannot decode compressed image (format '{msg.format}')")
    if decoded.ndim == 2:
        return _to_rgb8(decoded, "mono")
    return _to_rgb8(decoded, "bgr" if decoded.shape[2] == 3 else "bgra")


def _to_rgb8(pixels: np.ndarray, order: str) -> np.ndarray:
    try:
        # The library's dtype rule (uint16 and float to 8 bits), so topic and library agree.
        pixels = to_uint8(pixels)
    except ImageError as error:
        raise ImageConversionError(str(error)) from error
    if order == "rgb":
        return pixels
    if order == "bgr":
        return pixels[..., ::-1]
    if order == "rgba":
        return pixels[..., :3]
    if order == "bgra":
        return pixels[..., 2::-1]
    return np.repeat(pixels[..., None], 3, axis=2)


def array_to_image(pixels: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Build a sensor_msgs/Image from a C-contiguous array (rgb8/mono8/mono16/32FC1/...)."""
    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding '{encoding}'")
    dtype, channels, _ = ENCODINGS[encoding]
    pixels = np.ascontiguousarray(pixels, dtype=dtype)
    if pixels.ndim != (2 if channels == 1 else 3) or (channels > 1 and pixels.shape[2] != channels):
        raise ImageConversionError(f"array of shape {pixels.shape} does not fit encoding {encoding}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.shape[1] * channels * dtype.itemsize)
    payload = array.array("B")
    payload.frombytes(pixels.tobytes())
    msg.data = payload
    return msg
