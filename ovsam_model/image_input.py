"""Turning whatever image array a caller has into the one layout the model reads: HxWx3 uint8 RGB.

Cameras and files hand over grey, 16-bit, RGBA or float pictures; accepting them here, with one
set of rules, keeps every caller (predictor, CLI, ROS node) from re-inventing the conversion and
gets a message a user can act on instead of a shape error deep inside the network.

Rules:
- uint8: HxW or HxWx1 (grey, replicated to 3 channels), HxWx3 (taken as RGB), HxWx4 (RGBA; alpha
  dropped, not composited).
- uint16: the same channel layouts, scaled to 8 bits by value * 255 / 65535 (rounded), so a full
  16-bit range maps onto the full 8-bit range.
- float16/32/64: values must be finite and not negative. Values in [0, 1] (the convention of
  scikit-image and matplotlib) are scaled by 255; an image whose maximum is above 1 (a 32FC1
  thermal or intensity image on a ROS topic, a float picture in 0..255) is scaled by
  255 / maximum, so its brightest pixel becomes 255. Both cases round to the nearest level.
- Anything smaller than 2x2 pixels (a 1x1 image included) is rejected: a single pixel carries no
  spatial information and breaks the resize to the network's input.
- Other dtypes (bool, signed integers, complex, object) and other channel counts are rejected.
Channel order is never guessed: OpenCV users must convert BGR to RGB themselves.

These dtype rules live in `to_uint8`, which the ROS node's message conversion
(`ovsam_ros.image_conversion`) calls too, so a frame reaches the model with the same 8-bit values
whether it came through the library or through a topic.
"""
from __future__ import annotations

import numpy as np

MIN_IMAGE_SIDE = 2


class ImageError(ValueError):
    """An image array the model cannot read; the message says what to change."""


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """`image` as a C-contiguous HxWx3 uint8 RGB array (see the module docstring for the rules).

    Returns the input itself when it already is one (no copy), otherwise a new array.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ImageError(f"expected an HxW or HxWxC image, got an array with shape {image.shape}")
    height, width = image.shape[:2]
    if height == 0 or width == 0 or image.size == 0:
        raise ImageError(f"the image is empty (shape {image.shape})")
    if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
        raise ImageError(
            f"the image is {height}x{width} pixels; at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} is needed")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (1, 3, 4):
        raise ImageError(
            f"expected 1 (grey), 3 (RGB) or 4 (RGBA) channels, got {channels} (shape {image.shape})")

    pixels = to_uint8(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if channels == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif channels == 4:
        pixels = pixels[:, :, :3]
    return np.ascontiguousarray(pixels)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """The 8-bit values of a uint8, uint16 or float array of any shape (the dtype rules above).

    Returns the input itself when it is already uint8."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return np.rint(pixels.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        if not np.all(np.isfinite(pixels)):
            raise ImageError("the float image contains NaN or infinite values")
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0.0:
            raise ImageError(f"a float image must not have negative values, got a minimum of {low:g}")
        scale = 255.0 / max(high, 1.0)
        return np.rint(pixels.astype(np.float32) * np.float32(scale)).clip(0, 255).astype(np.uint8)
    raise ImageError(
        f"unsupported pixel type {pixels.dtype}; use uint8, uint16 or float (finite, not negative)")
