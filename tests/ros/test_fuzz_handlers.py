"""Property-based fuzzing of every message handler, service and runtime parameter of the node
(hypothesis).

The node core runs in this process; handlers are called directly with random field values of the
right ROS types (what can arrive over the wire). It runs twice: as shipped (the ovsam-shapes model in
its child process, `inference_process: true`) and with the tiny model on a thread of this process.
Properties: no exception escapes a handler, the last-resort guard never has to catch anything (every
bad input is handled on purpose), every prompt id is answered exactly once (an instance or a failure
with a reason), a bad image or depth image is counted as rejected and a good one is buffered, a
refused parameter leaves the settings as they were, and the node keeps serving.
"""
from __future__ import annotations

import array
import itertools
import os
import threading
import time
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import Point, PointStamped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from ovsam_model.synthetic.motion import MovingWorld
from ovsam_ros.image_conversion import ENCODINGS
from ovsam_ros.msg import Prompt, PromptArray
from ovsam_ros.node_wiring import NodeWiring
from ovsam_ros.settings import RUNTIME_PARAMETERS
from ovsam_ros.srv import Segment, SetVocabulary
from tests.ros.ros_env import apply_to_this_process

pytestmark = pytest.mark.ros
SCENE = MovingWorld(seed=5, size=128, num_objects=3, speed=1.0).render(0)


def object_box(scene) -> list[float]:
    """The box around the scene's largest object."""
    return [float(v) for v in scene.boxes[scene.most_visible_object()]]


KNOWN_BOX = object_box(SCENE)
CLASSES = ["red star", "blue cross", "green circle"]
# OVSAM_FUZZ_EXAMPLES: fewer examples while working on this file; the suite runs 100.
FUZZ = settings(max_examples=int(os.environ.get("OVSAM_FUZZ_EXAMPLES", "100")), deadline=None,
                suppress_health_check=list(HealthCheck), derandomize=True)

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
        return set(self.answers_since(0))

    def answers_since(self, first_message: int) -> list[str]:
        """Every prompt id answered in the messages from `first_message` on, once per answer."""
        with self.lock:
            ids: list[str] = []
            for msg in self.messages[first_message:]:
                ids.extend(i.prompt_id for i in msg.instances if i.prompt_id)
                ids.extend(msg.failed_prompt_ids)
            return ids

    def __len__(self) -> int:
        with self.lock:
            return len(self.messages)

    def segmented_since(self, first_message: int) -> set[str]:
        """The prompt ids answered with an instance in the messages from `first_message` on."""
        with self.lock:
            return {i.prompt_id for msg in self.messages[first_message:] for i in msg.instances if i.prompt_id}


@pytest.fixture(scope="module", params=["shipped: model in a child process", "tiny model on a thread"])
def core(request):
    apply_to_this_process()
    rclpy.init()
    # A prompt stamped with a frame still to come waits this long for it: short, so that the fuzzed
    # future stamps exercise the wait without slowing every example.
    overrides = [Parameter("future_stamp_wait_s", value=0.05)]
    if request.param.startswith("shipped"):
        # As shipped: the default parameters (ovsam-shapes, inference_process true), the default factory.
        node = rclpy.create_node("ovsam_fuzz", parameter_overrides=overrides)
        core = NodeWiring(node)
    else:
        import torch

        from ovsam_model import build_model
        from ovsam_model.predictor import OVSAMPredictor

        node = rclpy.create_node("ovsam_fuzz", parameter_overrides=[*overrides, Parameter("inference_process",
                                                                                          value=False)])
        torch.manual_seed(0)
        predictor = OVSAMPredictor(build_model("ovsam-tiny"), None)
        predictor.set_vocabulary(CLASSES)
        core = NodeWiring(node, predictor_factory=lambda settings: predictor)
    core.configure()
    core.activate()
    assert (type(core.pipeline.predictor).__name__ == "PredictorProcess") == request.param.startswith("shipped")
    core.pipeline.outputs.instances_pub = Capture()
    core.shipped = request.param.startswith("shipped")
    # A frame of the synthetic world, where the shipped model segments the box around an object: the
    # fuzzed messages carry that prompt too, so every example also runs the path that gives a mask.
    good = Image(height=SCENE.image.shape[0], width=SCENE.image.shape[1], encoding="rgb8",
                 step=SCENE.image.shape[1] * 3, data=array.array("B", SCENE.image.tobytes()))
    good.header.stamp.sec = 1
    core.good_image = good
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


def wait_answered(core, ids: set[str], timeout: float = 60.0, since: int = 0) -> list[str]:
    """Wait until every id is answered in the published messages from `since` on (the deadline only
    catches a hang); returns those answers' ids, once per answer."""
    capture = core.pipeline.outputs.instances_pub
    deadline = time.monotonic() + timeout
    while not ids <= set(capture.answers_since(since)):
        unanswered = sorted(ids - set(capture.answers_since(since)))
        assert time.monotonic() < deadline, f"unanswered: {unanswered[:5]}"
        time.sleep(0.01)
    return capture.answers_since(since)


def assert_answered_once(core, ids: set[str], since: int) -> None:
    """Every id answered, each exactly once (one instance or one failure), in the messages from `since`."""
    answers = wait_answered(core, ids, since=since)
    time.sleep(0.05)  # a second answer published right after the first would show here
    answers = core.pipeline.outputs.instances_pub.answers_since(since)
    repeated = {i for i in ids if answers.count(i) != 1}
    assert not repeated, {i: answers.count(i) for i in repeated}


def well_formed_image(draw, encoding: str) -> tuple[Image, np.ndarray]:
    """An image a camera could send: the encoding's channels and depth, the step and data that match."""
    dtype, channels, _ = ENCODINGS[encoding]
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == np.float32:
        pixels = rng.random((height, width, channels), dtype=np.float32)
    else:
        pixels = rng.integers(0, np.iinfo(dtype).max, (height, width, channels), dtype=dtype, endpoint=True)
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels * dtype.itemsize,
                data=array.array("B", pixels.tobytes()))
    return msg, pixels


stamps = itertools.count(1_000)


def assert_handled(core) -> None:
    assert core.health.counters.get("callback_errors", 0) == 0, core.health.problems[-3:]
    assert core.pipeline.worker.stats.errors == 0, core.pipeline.worker.stats.last_error


@FUZZ
@given(draw=st.data(), encoding=encodings, height=st.integers(0, 70000), width=st.integers(0, 70000),
       step=st.integers(0, 2**32 - 1), bigendian=st.integers(0, 255), data=st.binary(max_size=4096),
       compressed=st.booleans(), well_formed=st.booleans())
def test_image_handler_rejects_or_buffers_every_image(core, draw, encoding, height, width, step, bigendian, data,
                                                      compressed, well_formed):
    """Each image is either counted in images_rejected or buffered as the latest frame, never both or
    neither; one that a camera could send (any supported encoding, or a PNG) is always buffered."""
    if well_formed and compressed:
        pixels = np.random.default_rng(draw.draw(st.integers(0, 2**32 - 1))).integers(0, 256, (9, 13, 3), np.uint8)
        msg = CompressedImage(format="png", data=array.array("B", cv2.imencode(".png", pixels)[1].tobytes()))
    elif well_formed:
        msg, _ = well_formed_image(draw.draw, draw.draw(st.sampled_from(sorted(ENCODINGS))))
    elif compressed:
        msg = CompressedImage(format=encoding, data=array.array("B", data))
    else:
        msg = Image(height=height, width=width, encoding=encoding, step=step, is_bigendian=bigendian,
                    data=array.array("B", data))
    msg.header.stamp.sec = next(stamps)
    rejected_before = core.health.counters.get("images_rejected", 0)
    core._on_image(msg)
    rejected = core.health.counters.get("images_rejected", 0) - rejected_before
    latest = core.pipeline.engine.latest_frame()
    buffered = latest is not None and latest.stamp_ns == msg.header.stamp.sec * 1_000_000_000
    assert (rejected, buffered) in {(1, False), (0, True)}, (rejected, buffered)
    if well_formed:
        assert buffered, core.health.problems[-1:]
    assert_handled(core)


# Few points, or around the limit of 64 per prompt (refused as the message is converted).
prompt_points = st.one_of(st.lists(st.builds(Point, x=doubles, y=doubles, z=doubles), max_size=6),
                          st.lists(st.builds(Point, x=doubles, y=doubles, z=doubles), min_size=60, max_size=80))


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
def test_prompt_handler_answers_every_prompt_once(core, data, count, stamp):
    core._on_image(core.good_image)  # frame 1 buffered and the latest; 7 is a frame still to come
    ids = [f"fuzz-{next(counter)}-{data.draw(texts)}" for _ in range(count)]
    known = Prompt(id=f"known-{next(counter)}", box=KNOWN_BOX)
    known.header.stamp.sec = 1
    position = data.draw(st.integers(0, count))
    msg = PromptArray(prompts=[data.draw(prompts(prompt_id)) for prompt_id in ids])
    msg.prompts.insert(position, known)
    msg.header.stamp.sec = stamp
    since = len(core.pipeline.outputs.instances_pub)
    core._on_prompts(msg)
    assert_answered_once(core, {*ids, known.id}, since)
    if core.shipped:  # the shipped model segments the object in its box, among any fuzzed company
        assert known.id in core.pipeline.outputs.instances_pub.segmented_since(since)
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
       with_info=st.booleans(), k=st.lists(doubles, min_size=9, max_size=9),
       info_size=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
       distortion=st.tuples(st.sampled_from(["", "plumb_bob", "equidistant", "x"]), st.lists(doubles, max_size=8)))
def test_camera_info_and_click_handlers(core, x, y, z, frame_id, with_info, k, info_size, distortion):
    """Any camera_info goes through its handler; then every click (projected through it, or an image
    click) is answered."""
    if with_info:
        info = CameraInfo(k=k, width=info_size[0], height=info_size[1], distortion_model=distortion[0],
                          d=distortion[1])
        info.header.frame_id = "camera"
        core._on_camera_info(info)
        assert core.camera.info is info
    else:
        core.camera.info = None
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
@given(data=st.data(), queries=st.one_of(st.just([]), st.lists(st.text(max_size=40), max_size=4)),
       use_image=st.booleans(),
       encoding=encodings, size=st.integers(0, 64), depth_encoding=encodings, depth_size=st.integers(0, 64),
       k=st.lists(doubles, min_size=9, max_size=9))
def test_segment_service(core, data, queries, use_image, encoding, size, depth_encoding, depth_size, k):
    core._on_image(core.good_image)  # without an image in the request, the service uses this frame
    image = Image()
    if use_image:
        image = Image(height=size, width=size, encoding=encoding, step=size * 3,
                      data=array.array("B", bytes(size * size * 3)))
    depth = Image(height=depth_size, width=depth_size, encoding=depth_encoding, step=depth_size * 2,
                  data=array.array("B", bytes(depth_size * depth_size * 2)))
    request = Segment.Request(image=image, text_queries=queries, depth=depth,
                              camera_info=CameraInfo(width=size, height=size, k=k),
                              prompts=[data.draw(prompts(f"svc-{i}")) for i in range(data.draw(st.integers(0, 3)))])
    # Beside the fuzzed prompts: one the shipped model segments, and one refused as it is converted.
    request.prompts.append(Prompt(id="svc-known", box=KNOWN_BOX))
    request.prompts.append(Prompt(id="svc-65-points", points=[Point(x=5.0, y=5.0)] * 65))
    response = run_service(core.pipeline.services._on_segment(request, Segment.Response()))
    if response.success:
        answered = [i.prompt_id for i in response.result.instances if i.prompt_id]
        answered += list(response.result.failed_prompt_ids)
        assert sorted(answered) == sorted(p.id for p in request.prompts)  # each once
        if core.shipped and not use_image:
            assert "svc-known" in {i.prompt_id for i in response.result.instances}
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


@FUZZ
@given(draw=st.data(), encoding=encodings, height=st.integers(0, 70000), width=st.integers(0, 70000),
       step=st.integers(0, 2**32 - 1), data=st.binary(max_size=4096), well_formed=st.booleans())
def test_depth_handler_rejects_or_keeps_every_depth_image(core, draw, encoding, height, width, step, data,
                                                          well_formed):
    """Each depth image is either counted in depth_rejected or kept for pairing, never both or neither;
    a well-formed 16UC1 (millimetres) or 32FC1 (metres) image is always kept."""
    if well_formed:
        msg, _ = well_formed_image(draw.draw, draw.draw(st.sampled_from(["16UC1", "32FC1"])))
    else:
        msg = Image(height=height, width=width, encoding=encoding, step=step, data=array.array("B", data))
    msg.header.stamp.sec = next(stamps)
    rejected_before = core.health.counters.get("depth_rejected", 0)
    kept_before = core.camera.depth.buffer.received
    core._on_depth(msg)
    rejected = core.health.counters.get("depth_rejected", 0) - rejected_before
    kept = core.camera.depth.buffer.received - kept_before
    assert (rejected, kept) in {(1, 0), (0, 1)}, (rejected, kept)
    if well_formed:
        assert kept == 1, core.health.problems[-1:]
    assert_handled(core)


@st.composite
def detections(draw, index: int, prefix: str):
    """A vision_msgs/Detection2D as the handler reads it (vision_msgs is not installed here): any id,
    including none, and any float64 in the box."""
    detection_id = draw(st.one_of(st.just(""), texts.map(lambda text: f"{prefix}-{index}-{text}")))
    bbox = NS(center=NS(position=NS(x=draw(doubles), y=draw(doubles)), theta=draw(doubles)),
              size_x=draw(doubles), size_y=draw(doubles))
    return NS(id=detection_id, bbox=bbox)


@FUZZ
@given(data=st.data(), count=st.integers(0, 8), stamp=st.sampled_from([0, 1, 7]))
def test_detections_handler_answers_every_detection_once(core, data, count, stamp):
    core._on_image(core.good_image)
    prefix = f"det{next(counter)}"
    items = [data.draw(detections(i, prefix)) for i in range(count)]
    # A detection without an id is answered under 'detection-<index in the message>'.
    ids = {item.id or f"detection-{i}" for i, item in enumerate(items)}
    since = len(core.pipeline.outputs.instances_pub)
    core._on_detections(NS(header=NS(stamp=NS(sec=stamp, nanosec=0), frame_id="camera"), detections=items))
    assert_answered_once(core, ids, since)
    assert_handled(core)


runtime_values = st.one_of(st.integers(-3, 10**6), doubles, texts, st.booleans())


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(RUNTIME_PARAMETERS + ("frame_buffer_size", "model", "device")),
                                  runtime_values), min_size=1, max_size=3))
def test_parameter_changes_apply_whole_or_not_at_all(core, changes):
    """set_parameters with any values (rclpy checks each value's type, then the node's callback): a
    refused change leaves every setting as it was; an accepted one leaves settings that validate. The
    node then still answers a prompt."""
    before = vars(core.settings).copy()
    parameters = [Parameter(name, value=value) for name, value in changes]
    results = core.node.set_parameters_atomically(parameters)
    assert_handled(core)
    if results.successful:
        after = core.settings
        after.validate()
        for name, value in dict(changes).items():
            assert getattr(after, name) == value
    else:
        assert results.reason
        assert vars(core.settings) == before
    restore = [Parameter(name, value=before[name]) for name in RUNTIME_PARAMETERS if name != "vocabulary"]
    assert core.node.set_parameters_atomically(restore).successful
    if core.settings.vocabulary != before["vocabulary"]:
        assert core.node.set_parameters_atomically([Parameter("vocabulary", value=before["vocabulary"])]).successful
    assert vars(core.settings) == before
    since = len(core.pipeline.outputs.instances_pub)
    prompt_id = f"after-parameters-{next(counter)}"
    core._on_prompts(PromptArray(prompts=[Prompt(id=prompt_id, box=[2.0, 2.0, 30.0, 25.0])]))
    assert_answered_once(core, {prompt_id}, since)


def test_node_still_serves_after_fuzzing(core):
    core._on_prompts(PromptArray(prompts=[Prompt(id="final", box=[2.0, 2.0, 30.0, 25.0])]))
    wait_answered(core, {"final"})
    assert_handled(core)
