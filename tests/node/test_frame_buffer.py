import threading

import numpy as np
import pytest

from ovsam_ros.frame_buffer import Frame, FrameBuffer, FrameNotBuffered, format_stamp


def frame(stamp_ns: int) -> Frame:
    return Frame(stamp_ns=stamp_ns, rgb=np.zeros((2, 3, 3), np.uint8))


def test_lookup_by_stamp_and_latest():
    buffer = FrameBuffer(3)
    with pytest.raises(FrameNotBuffered, match="no image has been received"):
        buffer.get(0)
    for stamp in (10, 20, 30):
        buffer.add(frame(stamp))
    assert buffer.get(20).stamp_ns == 20
    assert buffer.get(0).stamp_ns == 30 and buffer.latest().stamp_ns == 30


def test_eviction_names_what_is_held():
    buffer = FrameBuffer(2)
    for stamp in (1_000_000_000, 2_000_000_000, 3_000_000_000):
        buffer.add(frame(stamp))
    assert len(buffer) == 2
    with pytest.raises(FrameNotBuffered) as error:
        buffer.get(1_000_000_000)
    assert "1.000000000" in str(error.value) and "2.000000000 .. 3.000000000" in str(error.value)


def test_concurrent_adds_stay_bounded():
    buffer = FrameBuffer(4)

    def produce(offset: int) -> None:
        for i in range(500):
            buffer.add(frame(offset + i))

    threads = [threading.Thread(target=produce, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(buffer) == 4


def test_format_stamp_pads_nanoseconds():
    assert format_stamp(5_000_000_007) == "5.000000007"
    with pytest.raises(ValueError):
        FrameBuffer(0)


def test_only_a_stamp_newer_than_every_buffered_frame_may_still_come():
    buffer = FrameBuffer(2)
    assert buffer.is_future(5) and not buffer.is_future(0)  # nothing yet: any stamped frame may come
    for stamp in (10, 20, 30):
        buffer.add(frame(stamp))
    assert buffer.is_future(31)
    assert not buffer.is_future(30) and not buffer.is_future(25) and not buffer.is_future(10)  # held, lost, evicted
