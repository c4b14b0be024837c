"""A bounded buffer of recent camera frames, looked up by stamp (zero stamp = latest)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

# Images sent with a service call are each their own source ("service-1", ...), and one cache group.
SERVICE_SOURCE_PREFIX = "service-"
SERVICE_CACHE_GROUP = "service"


@dataclass(frozen=True)
class Frame:
    stamp_ns: int          # header stamp in nanoseconds: the key prompts refer to
    rgb: np.ndarray        # (H, W, 3) uint8, possibly a view of the message buffer
    header: Any = None     # std_msgs/Header of the source image, echoed in results
    received_at: float = 0.0
    source: str = "camera"  # images sent with a service call are their own source, never a camera frame

    @property
    def key(self) -> tuple[str, int]:
        # The predictor's feature cache is keyed by frame, so a second prompt on a frame costs only the decoder.
        return (self.source, self.stamp_ns)

    @property
    def cache_group(self) -> str:
        """Its group in the predictor's feature cache: each camera's frames evict only each other, and
        the images sent with service calls share one group."""
        return SERVICE_CACHE_GROUP if self.source.startswith(SERVICE_SOURCE_PREFIX) else self.source

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


class FrameNotBuffered(LookupError):
    """A prompt asked for a frame the buffer does not hold (never received, or already evicted)."""


class FrameBuffer:
    """Thread-safe: the executor thread adds frames while the inference thread looks them up."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"frame buffer capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._frames: OrderedDict[int, Frame] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def add(self, frame: Frame) -> None:
        with self._lock:
            self._frames.pop(frame.stamp_ns, None)
            self._frames[frame.stamp_ns] = frame
            while len(self._frames) > self._capacity:
                self._frames.popitem(last=False)

    def latest(self) -> Frame | None:
        with self._lock:
            return next(reversed(self._frames.values()), None)

    def get(self, stamp_ns: int) -> Frame:
        """The frame with exactly this stamp; 0 means the latest frame."""
        with self._lock:
            if not self._frames:
                raise FrameNotBuffered("no image has been received yet")
            if stamp_ns == 0:
                return next(reversed(self._frames.values()))
            frame = self._frames.get(stamp_ns)
            if frame is not None:
                return frame
            oldest, newest = next(iter(self._frames)), next(reversed(self._frames))
        raise FrameNotBuffered(
            f"no buffered frame with stamp {format_stamp(stamp_ns)}; the buffer holds "
            f"{format_stamp(oldest)} .. {format_stamp(newest)} (frame_buffer_size={self._capacity})")

    def is_future(self, stamp_ns: int) -> bool:
        """Whether a frame with this stamp may still arrive: it is not buffered and is newer than every
        buffered frame (or none has arrived). Zero (the latest frame) never is; an older stamp that is
        not buffered was lost or evicted and will not come."""
        with self._lock:
            if stamp_ns == 0 or stamp_ns in self._frames:
                return False
            return not self._frames or stamp_ns > next(reversed(self._frames))

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()


def format_stamp(stamp_ns: int) -> str:
    return f"{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
