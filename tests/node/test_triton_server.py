"""The shipped model served by a real Triton server (the one bundled in nvidia-pytriton, Python
backend, CPU), against the local model.

One server for the module (it takes about a minute to load its four models on a small machine);
the test that kills it runs last and leaves it restarted. The server runs in explicit model-control
mode so that one test can unload a model, as an operator or a failed load would.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ovsam_model.backends.triton_backend import InferenceServerError
from ovsam_model.build import build_predictor
from ovsam_model.modeling.ovsam import resize_like_official
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic import generate_scene
from ovsam_model.triton.health_probe import ServerHealthProbe
from ovsam_model.triton.local_server import LocalTritonServer
from ovsam_model.triton.names import prompt_model
from ovsam_model.triton.repository import write_repository
from ovsam_ros.engine import EngineSettings, PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.prompt_conversion import PromptRequest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MODEL = "ovsam-shapes"
HEIGHT, WIDTH = 480, 640


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("triton")
    repository = write_repository(MODEL, root / "repository")
    server = LocalTritonServer(repository, log_path=root / "tritonserver.log",
                               extra_args=("--model-control-mode=explicit", "--load-model=*"))
    server.start(ready_timeout_s=600)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local() -> OVSAMPredictor:
    return build_predictor(MODEL, device="cpu")


def remote_predictor(server: LocalTritonServer) -> OVSAMPredictor:
    return build_predictor(MODEL, device="cpu", inference_server=f"http://{server.url}", server_timeout_s=30.0)


def frames(count: int, seed: int = 7) -> list[tuple[np.ndarray, list[PromptSpec]]]:
    """640x480 frames of the shapes world with a box, a click and a click+box prompt per object."""
    rng = np.random.default_rng(seed)
    scale = WIDTH / 256  # the 256-pixel scene stretched to 640x480
    result = []
    for _ in range(count):
        scene = generate_scene(rng, size=256, max_objects=4)
        image = resize_like_official(scene.image, HEIGHT, WIDTH)
        prompts = []
        for index, box in enumerate(scene.boxes):
            box = np.asarray(box, float) * [scale, HEIGHT / 256, scale, HEIGHT / 256]
            centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
            prompts += [PromptSpec(f"box{index}", box=box), PromptSpec(f"click{index}", points=[centre]),
                        PromptSpec(f"both{index}", points=[centre, [2.0, 2.0]], point_labels=[1, 0], box=box)]
        result.append((image, prompts))
    return result


def assert_same_answers(expected, actual) -> None:
    assert [p.prompt_id for p in actual] == [p.prompt_id for p in expected]
    for want, got in zip(expected, actual):
        assert np.array_equal(got.mask, want.mask), want.prompt_id
        assert (got.label, got.class_index, got.box) == (want.label, want.class_index, want.box), want.prompt_id
        assert got.top_labels == want.top_labels
        assert got.score == pytest.approx(want.score, abs=1e-5)
        assert got.mask_score == pytest.approx(want.mask_score, abs=1e-5)


def test_answers_equal_the_local_model(server: LocalTritonServer, local: OVSAMPredictor) -> None:
    remote = remote_predictor(server)
    for number, (image, prompts) in enumerate(frames(3)):
        key = f"frame{number}"
        local.set_image(image, key=key)
        remote.set_image(image, key=key)
        expected = local.predict(prompts, key)
        assert any(p.label for p in expected)  # the scenes are recognisable: the comparison means something
        assert_same_answers(expected, remote.predict(prompts, key))
    assert remote.backend.status.state == "ready"
    assert remote.backend.status.last_latency_s is not None


def test_two_clients_share_one_server(server: LocalTritonServer, local: OVSAMPredictor) -> None:
    work = frames(4, seed=11)
    expected = []
    for number, (image, prompts) in enumerate(work):
        local.set_image(image, key=number)
        expected.append(local.predict(prompts, number))
    answers: dict[int, list] = {0: [], 1: []}
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            predictor = remote_predictor(server)
            for number, (image, prompts) in enumerate(work):
                predictor.set_image(image, key=number)
                answers[index].append(predictor.predict(prompts, number))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(index,)) for index in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors
    for index in answers:
        assert len(answers[index]) == len(work)
        for want, got in zip(expected, answers[index]):
            assert_same_answers(want, got)


def test_a_model_that_is_not_loaded_fails_its_prompts_with_the_reason(server: LocalTritonServer) -> None:
    import tritonclient.http as httpclient

    remote = remote_predictor(server)
    image, prompts = frames(1, seed=3)[0]
    remote.set_image(image, key="f")
    boxes = [p for p in prompts if p.has_box and not p.num_points]
    control = httpclient.InferenceServerClient(server.url)
    control.unload_model(prompt_model("box"))
    try:
        with pytest.raises(InferenceServerError, match="ovsam_prompt_box is not loaded"):
            remote.predict(boxes, "f")
        assert remote.backend.status.state == "model not loaded"
        # Other layouts still answer; the node's health probe names the missing model.
        assert remote.predict([p for p in prompts if not p.has_box], "f")
        assert ServerHealthProbe(server.url).probe_once()["server_state"] == "model not loaded: ovsam_prompt_box"
    finally:
        control.load_model(prompt_model("box"))
    assert len(remote.predict(boxes, "f")) == len(boxes)


@pytest.mark.ros
def test_two_nodes_share_the_server_publish_the_local_answers_and_survive_its_restart(
        server: LocalTritonServer, local: OVSAMPredictor) -> None:
    pytest.importorskip("rclpy")
    import subprocess
    import sys

    from geometry_msgs.msg import Point
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from ovsam_ros.msg import InstanceMaskArray, Prompt, PromptArray
    from ovsam_ros.tools.demo import mask_from_instance
    from ovsam_ros.tools.harness import REPO_ROOT, stop_process
    from tests.ros.node_harness import NodeUnderTest, box_prompt, image_msg
    from tests.ros.ros_env import isolated_ros_environment

    stamp = 7_000_000_000
    image, specs = frames(1, seed=21)[0]
    # Whole pixels: the message's float32 box and the local float64 one must be the same numbers.
    specs = [PromptSpec(s.prompt_id, points=np.round(s.points) if s.num_points else np.zeros((0, 2)),
                        point_labels=s.point_labels, box=None if s.box is None else np.round(s.box))
             for s in specs if not (s.num_points and s.has_box)]
    local.set_image(image, key="node")
    expected = {p.prompt_id: p for p in local.predict(specs, "node")}

    stop = threading.Event()
    other_answers: list[int] = []

    def other_client() -> None:  # a second client on the same server all along
        predictor = remote_predictor(server)
        other_image, other_specs = frames(1, seed=22)[0]
        while not stop.is_set():
            predictor.set_image(other_image, key=len(other_answers))
            other_answers.append(len(predictor.predict(other_specs, len(other_answers))))

    thread = threading.Thread(target=other_client, daemon=True)
    thread.start()
    # Prompts wait for their frame (future_stamp_wait_s) however late DDS delivers it to either node;
    # the two nodes' diagnostics share a name, so their image counters cannot be told apart.
    waits = {"future_stamp_wait_s": 30.0, "max_prompt_wait_s": 60.0}
    node = NodeUnderTest({"image_qos": "reliable", "inference_server": server.url, **waits})
    # A second ovsam_node on the same server, in its own namespace (its topics under /second).
    second = subprocess.Popen(
        [sys.executable, "-m", "ovsam_ros.node", "--ros-args", "-r", "__ns:=/second", "-p", "image_qos:=reliable",
         "-p", f"inference_server:={server.url}",
         *[arg for name, value in waits.items() for arg in ("-p", f"{name}:={value}")]],
        cwd=REPO_ROOT, env=isolated_ros_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        diagnostics = node.diagnostics
        second_image = node.node.create_publisher(Image, "/second/image", QoSProfile(depth=10))
        second_prompts = node.node.create_publisher(PromptArray, "/second/prompts", 10)
        second_results: list = []
        node.node.create_subscription(InstanceMaskArray, "/second/instances", second_results.append, 50)
        node.wait_ready()
        node.spin_until(lambda: second_prompts.get_subscription_count() > 0 and
                        second_image.get_subscription_count() > 0, "the second node to subscribe", timeout=120)
        node.publish_frame(image, stamp)
        second_image.publish(image_msg(image, stamp))
        prompts = []
        for spec in specs:
            if spec.has_box:
                prompts.append(box_prompt(spec.prompt_id, spec.box, stamp_ns=stamp))
            else:
                prompt = Prompt(id=spec.prompt_id, points=[Point(x=float(x), y=float(y)) for x, y in spec.points])
                prompt.header.stamp.sec, prompt.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                prompts.append(prompt)
        node.send_prompts(prompts)
        second_prompts.publish(PromptArray(prompts=prompts))
        answers = node.answers_for(set(expected), timeout=120)
        node.spin_until(lambda: {i.prompt_id for r in second_results for i in r.instances} |
                        {f for r in second_results for f in r.failed_prompt_ids} >= set(expected),
                        "the second node's answers", timeout=120)
        second_answers = {i.prompt_id: i for r in second_results for i in r.instances}
        assert not [f for r in second_results for f in r.failure_reasons]
        for prompt_id, (payload, _) in answers.items():
            assert not isinstance(payload, str), f"{prompt_id}: {payload}"
            for instance in (payload, second_answers[prompt_id]):
                assert np.array_equal(mask_from_instance(instance, HEIGHT, WIDTH), expected[prompt_id].mask), prompt_id
                assert instance.label == expected[prompt_id].label
        stop_process(second)
        node.spin_until(lambda: diagnostics.latest().get("server_state") == "ready", "server_state ready")
        facts = diagnostics.latest()
        assert facts["inference_server"] == server.url and facts["server_latency"].endswith(" ms")
        assert facts["backend"] == f"triton at {server.url}"
        stop.set()
        thread.join(120)
        assert other_answers and all(count == len(frames(1, seed=22)[0][1]) for count in other_answers)

        # The server killed mid-stream: the node (its model in the inference child) publishes a
        # failure with the reason for every prompt, keeps running, and answers after a restart.
        server.kill()
        node.publish_frame(image, stamp + 1)
        node.wait_frames_received()
        for prompt in prompts:
            prompt.header.stamp.nanosec += 1
            prompt.id = f"{prompt.id}-down"
        node.send_prompts(prompts)
        down = node.answers_for({p.id for p in prompts}, timeout=120)
        for payload, _ in down.values():
            assert isinstance(payload, str) and "is unreachable" in payload and server.url in payload, payload
        node.spin_until(lambda: diagnostics.latest().get("server_state") == "unreachable", "server_state unreachable")
        server.start(ready_timeout_s=600)
        for prompt in prompts:
            prompt.id = prompt.id.replace("-down", "-back")
        node.send_prompts(prompts)
        back = node.answers_for({p.id for p in prompts}, timeout=120)
        for prompt_id, (payload, _) in back.items():
            assert not isinstance(payload, str), f"{prompt_id}: {payload}"
            original = prompt_id.removesuffix("-back")
            assert np.array_equal(mask_from_instance(payload, HEIGHT, WIDTH), expected[original].mask), prompt_id
        assert node.is_alive()
    finally:
        stop.set()
        stop_process(second)
        node.close()
        thread.join(120)


def test_a_killed_server_fails_prompts_with_reasons_then_answers_after_restart(
        server: LocalTritonServer, local: OVSAMPredictor) -> None:
    remote = remote_predictor(server)
    engine = PerceptionEngine(remote, EngineSettings(frame_buffer_size=4))
    (first, first_prompts), (second, second_prompts) = frames(2, seed=5)
    engine.frames.add(Frame(stamp_ns=1, rgb=first))
    requests = [PromptRequest(spec, stamp_ns=1) for spec in first_prompts]
    assert not [f for a in engine.answer(requests) for f in a.failures]

    server.kill()
    # Mid-stream: a new frame cannot be encoded, and prompts on the cached frame cannot be decoded.
    engine.frames.add(Frame(stamp_ns=2, rgb=second))
    for stamp, specs in ((2, second_prompts), (1, first_prompts)):
        answers = engine.answer([PromptRequest(spec, stamp_ns=stamp) for spec in specs])
        failures = [f for a in answers for f in a.failures]
        assert sorted(f.prompt_id for f in failures) == sorted(s.prompt_id for s in specs)
        assert all("is unreachable" in f.reason and server.url in f.reason for f in failures), failures[0].reason
        assert not [r for a in answers for r in a.instances]
    assert remote.backend.status.state == "unreachable"

    server.start(ready_timeout_s=600)
    local.set_image(second, key="second")
    answers = engine.answer([PromptRequest(spec, stamp_ns=2) for spec in second_prompts])
    assert not [f for a in answers for f in a.failures]
    assert_same_answers(local.predict(second_prompts, "second"), [r.prediction for a in answers for r in a.instances])
    assert remote.backend.status.state == "ready"
