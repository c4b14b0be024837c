"""Property-based fuzzing of every message handler and service of the node (hypothesis).

The node core runs in this process on the real tiny model; handlers are called directly with random
field values of the right ROS types (what can arrive over the wire). Properties: no exception escapes
a handler, the last-resort guard never has to catch anything (every bad input is handled on purpose),
every prompt id is answered (an instance or a failure with a reason), and the node keeps serving.
"""
from __future__ import annotations

import array
import threading
import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import Point, PointStamped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from ovsam_ros.msg import Prompt, PromptArray
from ovsam_ros.node_wiring import NodeWiring
from ovsam_ros.srv import Segment, SetVocabulary
from tests.ros.ros_env import apply_to_this_process

pytestmark = pytest.mark.ros
CLASSES = ["red star", "blue cross", "green circle"]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0.0, -1.0, 1e9, 31.5, 12.0]))
doubles = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 5.0, 20.0, -3.0]))
texts = st.text(max_size=80)
encodings = st.one_of(st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC3", "16UC1",
                                       "32FC1", "yuv422", "", "RGB8", "bayer_rggb8"]), texts)


class Capture:
    """Stands in for the instances publisher: records what the node publishes."""

    def __init__(self) -> None:
        self.messages = []
        self.lock = threading.Lock()

    def publish(self, msg) -> None:
        with self.lock:
            self.messages.append(msg)

    def get_subscription_count(self) -> int:
        return 0

    def answered(self) -> set[str]:
        with self.lock:
            ids = set()
            for msg in self.messages:
                ids.update(i.prompt_id for i in msg.instances)
                ids.update(msg.failed_prompt_ids)
            return ids


@pytest.fixture(scope="module")
def core():
    import torch

    from ovsam_model import build_model
    from ovsam_model.predictor import OVSAMPredictor

    apply_to_this_process()
    rclpy.init()
    # The model is built here, in this process: it runs on the node's thread, not in a child process.
    node = rclpy.create_node("ovsam_fuzz", parameter_overrides=[Parameter("inference_process", value=False)])
    torch.manual_seed(0)
    predictor = OVSAMPredictor(build_model("ovsam-tiny"), None)
    predictor.set_vocabulary(CLASSES)
    core = NodeWiring(node, predictor_factory=lambda settings: predictor)
    core.configure()
    core.activate()
    core.pipeline.outputs.instances_pub = Capture()
    frame = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    good = Image(height=32, width=40, encoding="rgb8", step=120, data=array.array("B", frame.tobytes()))
    good.header.stamp.sec = 1
    core._on_image(good)
    yield core
    core.cleanup()
    node.destroy_node()
    rclpy.try_shutdown()


def run_service(coroutine, timeout: float = 60.0):
    """Drive a service coroutine as an executor would: resume it until it returns."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            coroutine.send(None)
        except StopIteration as finished:
            return finished.value
        assert time.monotonic() < deadline, "service call did not finish"
        time.sleep(0.001)


def wait_answered(core, ids: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ids <= core.pipeline.outputs.instances_pub.answered():
        unanswered = sorted(ids - core.pipeline.outputs.instances_pub.answered())
        assert time.monotonic() < deadline, f"unanswered: {unanswered[:5]}"
        time.sleep(0.01)


def assert_handled(core) -> None:
    assert core.health.counters.get("callback_errors", 0) == 0, core.health.problems[-3:]
    assert core.pipeline.worker.stats.errors == 0, core.pipeline.worker.stats.last_error


@FUZZ
@given(encoding=encodings, height=st.integers(0, 70000), width=st.integers(0, 70000), step=st.integers(0, 2**32 - 1),
       bigendian=st.integers(0, 255), data=st.binary(max_size=4096), compressed=st.booleans())
def test_image_handler(core, encoding, height, width, step, bigendian, data, compressed):
    if compressed:
        msg = CompressedImage(format=encoding, data=array.array("B", data))
    else:
        msg = Image(height=height, width=width, encoding=encoding, step=step, is_bigendian=bigendian,
                    data=array.array("B", data))
    core._on_image(msg)
    assert_handled(core)


prompt_points = st.lists(st.builds(Point, x=doubles, y=doubles, z=doubles), max_size=80)


@st.composite
def prompts(draw, prompt_id: str):
    prompt = Prompt(id=prompt_id, points=draw(prompt_points),
                    point_labels=draw(st.lists(st.integers(0, 255), max_size=5)),
                    box=draw(st.lists(floats, min_size=4, max_size=4)), track=draw(st.booleans()))
    prompt.header.stamp.sec = draw(st.sampled_from([0, 1, 2, 2**31 - 1]))
    prompt.header.stamp.nanosec = draw(st.sampled_from([0, 5, 999_999_999]))
    return prompt


counter = iter(range(10**9))


@FUZZ
@given(data=st.data(), count=st.integers(0, 6), stamp=st.sampled_from([0, 1, 7]))
def test_prompt_handler_answers_every_prompt(core, data, count, stamp):
    ids = [f"fuzz-{next(counter)}-{data.draw(texts)}" for _ in range(count)]
    msg = PromptArray(prompts=[data.draw(prompts(prompt_id)) for prompt_id in ids])
    msg.header.stamp.sec = stamp
    core._on_prompts(msg)
    wait_answered(core, set(ids))
    assert_handled(core)
    core.pipeline.engine.tracker.clear()


@FUZZ
@given(text=st.text(max_size=3000))
def test_text_query_handler(core, text):
    core._on_text_query(String(data=text))
    assert_handled(core)
    assert len(core.text_queries) <= 100
    core.text_queries = ()


@FUZZ
@given(x=doubles, y=doubles, z=doubles, frame_id=st.sampled_from(["", "camera", "map", "\u00fc\u00df"]),
       with_info=st.booleans(), k=st.lists(doubles, min_size=9, max_size=9))
def test_click_handlers(core, x, y, z, frame_id, with_info, k):
    core.camera.info = CameraInfo(k=k) if with_info else None
    if core.camera.info is not None:
        core.camera.info.header.frame_id = "camera"
    def clicks_answered() -> int:
        answered = core.pipeline.outputs.instances_pub.answered()
        return sum(1 for i in answered if i.startswith(("clicked_point-", "image_click-")))

    before = clicks_answered()
    clicked = PointStamped(point=Point(x=x, y=y, z=z))
    clicked.header.frame_id = frame_id
    core._on_clicked_point(clicked)
    core._on_image_click(Point(x=x, y=y, z=z))
    deadline = time.monotonic() + 30
    while clicks_answered() < before + 2:  # each click answered (result or failure), maybe in one message
        assert time.monotonic() < deadline, "a click was not answered"
        time.sleep(0.01)
    assert_handled(core)
    core.pipeline.engine.tracker.clear()


@FUZZ
@given(data=st.data(), queries=st.lists(st.text(max_size=40), max_size=4), use_image=st.booleans(),
       encoding=encodings, size=st.integers(0, 64), depth_encoding=encodings, depth_size=st.integers(0, 64),
       k=st.lists(doubles, min_size=9, max_size=9))
def test_segment_service(core, data, queries, use_image, encoding, size, depth_encoding, depth_size, k):
    image = Image()
    if use_image:
        image = Image(height=size, width=size, encoding=encoding, step=size * 3,
                      data=array.array("B", bytes(size * size * 3)))
    depth = Image(height=depth_size, width=depth_size, encoding=depth_encoding, step=depth_size * 2,
                  data=array.array("B", bytes(depth_size * depth_size * 2)))
    request = Segment.Request(image=image, text_queries=queries, depth=depth,
                              camera_info=CameraInfo(width=size, height=size, k=k),
                              prompts=[data.draw(prompts(f"svc-{i}")) for i in range(data.draw(st.integers(0, 3)))])
    response = run_service(core.pipeline.services._on_segment(request, Segment.Response()))
    if response.success:
        answered = {i.prompt_id for i in response.result.instances} | set(response.result.failed_prompt_ids)
        assert {p.id for p in request.prompts} <= answered | {""}
        placed = {i.instance_index for i in response.result_3d.instances}
        assert placed.isdisjoint(response.result_3d.failed_instance_indices)
    else:
        assert response.message
        assert list(response.result.failed_prompt_ids) == [p.id for p in request.prompts]
        assert set(response.result.failure_reasons) <= {response.message}
    assert_handled(core)
    core.pipeline.engine.tracker.clear()


@FUZZ
@given(name=st.one_of(texts, st.sampled_from(["", "lvis-nope", "/etc/passwd", "../../x", "\x00"])),
       classes=st.lists(st.text(max_size=30), max_size=5))
def test_set_vocabulary_service(core, name, classes):
    size_before = core.pipeline.engine.vocabulary_size
    response = run_service(core.pipeline.services._on_set_vocabulary(SetVocabulary.Request(name=name, classes=classes),
                                                   SetVocabulary.Response()))
    if not response.success:
        assert response.size == size_before and "previous vocabulary stays" in response.message
    assert_handled(core)
    restore = SetVocabulary.Request(classes=CLASSES)
    run_service(core.pipeline.services._on_set_vocabulary(restore, SetVocabulary.Response()))


def test_detections_handler_answers_every_detection(core):
    """A Detection2DArray-shaped message with 300 detections: each id is answered (an instance, or a
    failure past the 256-prompt limit or for a box that will not convert). vision_msgs is not
    installed here, so the message is duck-typed with the attribute paths the handler reads; it goes
    through the same converter as the prompts topic and the segment service."""
    from types import SimpleNamespace as NS

    def detection(index: int) -> NS:
        size_x = "wide" if index == 3 else 10.0  # one detection whose box does not convert
        return NS(id=f"det-{index}", bbox=NS(center=NS(position=NS(x=15.0, y=12.0), theta=0.0), size_x=size_x,
                                             size_y=8.0))

    msg = NS(header=NS(stamp=NS(sec=0, nanosec=0), frame_id="camera"), detections=[detection(i) for i in range(300)])
    core._on_detections(msg)
    ids = {f"det-{i}" for i in range(300)}
    wait_answered(core, ids, timeout=120)
    failures = {pid: reason for m in core.pipeline.outputs.instances_pub.messages
                for pid, reason in zip(m.failed_prompt_ids, m.failure_reasons) if pid in ids}
    assert {failures[f"det-{i}"] for i in range(256, 300)} == {"more than 256 prompts in one message"}
    assert "det-3" in failures
    assert_handled(core)


def test_node_still_serves_after_fuzzing(core):
    core._on_prompts(PromptArray(prompts=[Prompt(id="final", box=[2.0, 2.0, 30.0, 25.0])]))
    wait_answered(core, {"final"})
    assert_handled(core)
