"""A depth image from a sensor_msgs/Image or an array: its stamp, its raw pixels and their unit."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .frame_buffer import stamp_to_ns
from .image_conversion import image_to_array

# Encoding -> metres per stored unit (REP 118: 16-bit depth in millimetres, float depth in metres).
DEPTH_UNITS = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


class DepthError(ValueError):
    """A message cannot be used as a depth image; the text says why."""


@dataclass(frozen=True)
class DepthImage:
    stamp_ns: int
    raw: np.ndarray           # (H, W) as received: uint16 millimetres or float32 metres
    metres_per_unit: float
    header: Any = None        # std_msgs/Header of the depth message, echoed in Instance3DArray

    @property
    def height(self) -> int:
        return int(self.raw.shape[0])

    @property
    def width(self) -> int:
        return int(self.raw.shape[1])

    def metres(self) -> np.ndarray:
        """(H, W) float32 metres; converted on demand so only depth actually used pays for it."""
        if self.metres_per_unit == 1.0:
            return np.ascontiguousarray(self.raw, dtype=np.float32)
        return self.raw.astype(np.float32) * np.float32(self.metres_per_unit)


def depth_from_array(pixels: np.ndarray, encoding: str, stamp_ns: int, header: Any = None) -> DepthImage:
    if encoding not in DEPTH_UNITS:
        raise DepthError(f"depth encoding '{encoding}' is not supported; publish 16UC1 (millimetres) or 32FC1 (metres)")
    if pixels.ndim != 2:
        raise DepthError(f"depth must have one channel, got shape {pixels.shape}")
    return DepthImage(stamp_ns=int(stamp_ns), raw=pixels, metres_per_unit=DEPTH_UNITS[encoding], header=header)


def depth_from_msg(msg: Any) -> DepthImage:
    """A sensor_msgs/Image with depth (viewed in place, not copied). Raises DepthError or ImageConversionError."""
    encoding = str(msg.encoding)
    if encoding not in DEPTH_UNITS:
        raise DepthError(f"depth encoding '{encoding}' is not supported; publish 16UC1 (millimetres) or 32FC1 (metres)")
    return depth_from_array(image_to_array(msg), encoding, stamp_to_ns(msg.header.stamp), msg.header)
