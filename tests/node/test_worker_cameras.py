"""Several cameras on the one inference worker, with a fake model: each camera's prompts are answered
on that camera's frames and through its own publisher, a flood on one camera does not hold up another
(round-robin: the other's prompt is served within a round or two of the flood's, counted in rounds, so
machine load cannot change the result), the wait bound and pending limit hold per camera, and every
model call still runs on the one thread."""
from __future__ import annotations

import threading
import time

import numpy as np

from ovsam_model.prompts import PromptSpec
from ovsam_ros.engine import EngineSettings, PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.prompt_conversion import PromptRequest
from ovsam_ros.worker import PROMPTS_PER_ROUND, InferenceWorker
from tests.node.fake_predictor import FakePredictor
from tests.node.test_worker_queue_policy import Recorder, backlog


def camera_engine(predictor: FakePredictor, name: str, stamp_ns: int, size: tuple[int, int]) -> PerceptionEngine:
    engine = PerceptionEngine(predictor, EngineSettings(frame_buffer_size=2))
    engine.add_frame(Frame(stamp_ns=stamp_ns, rgb=np.zeros((*size, 3), np.uint8), source=name))
    return engine


def prompt(prompt_id: str) -> PromptRequest:
    return PromptRequest(PromptSpec(prompt_id=prompt_id, box=np.array([2.0, 2.0, 20.0, 20.0])))


def run_until_answered(worker: InferenceWorker, *waits: tuple[Recorder, set[str]]) -> None:
    """Start the worker with what is already queued, wait for each recorder's prompt ids, stop it."""
    worker.start()
    try:
        for recorder, ids in waits:
            recorder.wait_for(ids)
    finally:
        worker.stop()


def test_each_camera_is_answered_on_its_own_frames_through_its_own_publisher() -> None:
    predictor = FakePredictor()
    front, rear = Recorder(), Recorder()
    frames: dict[str, list[tuple[str, int]]] = {"front": [], "rear": []}

    def publisher(name: str, recorder: Recorder):
        def publish(answer) -> None:
            frames[name].append((answer.frame.source, answer.frame.stamp_ns))
            recorder(answer)
        return publish

    worker = InferenceWorker(camera_engine(predictor, "front", 10, (48, 64)), publisher("front", front),
                             camera="front", log_error=lambda message: None)
    worker.add_camera("rear", camera_engine(predictor, "rear", 20, (40, 40)), publisher("rear", rear))
    worker.submit_prompts([prompt("f1")], camera="front")
    worker.submit_prompts([prompt("r1")], camera="rear")
    run_until_answered(worker, (front, {"f1"}), (rear, {"r1"}))
    assert set(front.answered) == {"f1"} and set(rear.answered) == {"r1"}
    assert front.answered["f1"][1] == rear.answered["r1"][1] == "instance"
    assert frames == {"front": [("front", 10)], "rear": [("rear", 20)]}
    # Both cameras' frames waited: one encoder pass for the two (feature-cache keys name the camera),
    # and neither camera's turn encoded its frame again.
    assert predictor.encoded_batches == [[("front", 10), ("rear", 20)]]
    assert ("set_image", predictor.calls[0][1]) not in predictor.calls
    assert {thread for _, thread in predictor.calls} == {predictor.calls[0][1]}
    assert worker.cameras["front"].stats.prompts_answered == 1 and worker.cameras["rear"].stats.prompts_answered == 1


def test_a_flood_on_one_camera_does_not_hold_up_another() -> None:
    predictor = FakePredictor(decode_s_per_prompt=0.001)
    flooded, quiet = Recorder(), Recorder()
    flood = backlog(20 * PROMPTS_PER_ROUND)
    served_before_quiet: list[int] = []
    lock = threading.Lock()

    def publish_quiet(answer) -> None:
        with lock, flooded.lock:
            served_before_quiet.append(len(flooded.answered))
        quiet(answer)

    worker = InferenceWorker(camera_engine(predictor, "a", 1, (64, 64)), flooded, camera="a",
                             max_pending_prompts=10_000, max_prompt_wait_s=1e9, log_error=lambda message: None)
    worker.add_camera("b", camera_engine(predictor, "b", 1, (64, 64)), publish_quiet)
    worker.submit_prompts(flood, camera="a")
    worker.submit_prompts([prompt("quiet")], camera="b")
    worker.start()
    try:
        quiet.wait_for({"quiet"})
        flooded.wait_for({r.prompt_id for r in flood})
    finally:
        worker.stop()
    # Round-robin: camera b's one prompt goes after at most one round of camera a's backlog, not after all 20.
    assert served_before_quiet == [served_before_quiet[0]] and served_before_quiet[0] <= PROMPTS_PER_ROUND
    assert flooded.duplicates == [] and quiet.duplicates == []


def test_the_pending_limit_and_shutdown_are_per_camera() -> None:
    predictor = FakePredictor()
    first, second = Recorder(), Recorder()
    worker = InferenceWorker(camera_engine(predictor, "a", 1, (32, 32)), first, camera="a",
                             max_pending_prompts=3, log_error=lambda message: None)
    worker.add_camera("b", camera_engine(predictor, "b", 1, (32, 32)), second)
    worker.submit_prompts([prompt(f"a{i}") for i in range(5)], camera="a")  # not started: they stay queued
    worker.submit_prompts([prompt("b0")], camera="b")
    assert [first.answered[f"a{i}"][1].startswith("overloaded") for i in (3, 4)] == [True, True]
    assert "b0" not in second.answered  # camera a's backlog does not count against camera b's limit
    assert worker.queue_depth_of("a") == 3 and worker.queue_depth_of("b") == 1
    worker.stop()
    assert {first.answered[f"a{i}"][1] for i in range(3)} == {"node shutting down"}
    assert second.answered["b0"][1] == "node shutting down"


def test_a_frame_job_and_another_cameras_prompts_share_one_encoder_pass() -> None:
    predictor = FakePredictor()
    text_answers: list[int] = []
    prompts_b = Recorder()
    engine_a = camera_engine(predictor, "a", 1, (32, 32))
    worker = InferenceWorker(engine_a, lambda answer: text_answers.append(len(answer.instances)), camera="a",
                             log_error=lambda message: None)
    worker.add_camera("b", camera_engine(predictor, "b", 7, (40, 48)), prompts_b)
    worker.submit_frame(engine_a.latest_frame(), ("red star",), camera="a")  # the text query's per-frame work
    worker.submit_prompts([prompt("b1"), prompt("b2")], camera="b")
    worker.start()
    try:
        prompts_b.wait_for({"b1", "b2"})
        deadline = time.monotonic() + 60
        while not text_answers and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
    assert text_answers == [1] and {outcome for _, outcome in prompts_b.answered.values()} == {"instance"}
    assert predictor.encoded_batches == [[("a", 1), ("b", 7)]]
    assert worker.cameras["a"].stats.frames_encoded_together == worker.cameras["b"].stats.frames_encoded_together == 1


def test_a_failed_batch_leaves_each_camera_to_encode_and_answer_its_own_frame() -> None:
    predictor = FakePredictor()

    def failing_batch(*args, **kwargs):
        raise RuntimeError("out of memory (simulated) for a batch of two images")

    predictor.set_images = failing_batch  # type: ignore[method-assign]
    front, rear = Recorder(), Recorder()
    worker = InferenceWorker(camera_engine(predictor, "front", 3, (32, 32)), front, camera="front",
                             log_error=lambda message: None)
    worker.add_camera("rear", camera_engine(predictor, "rear", 3, (32, 32)), rear)
    worker.submit_prompts([prompt("f")], camera="front")
    worker.submit_prompts([prompt("r")], camera="rear")
    run_until_answered(worker, (front, {"f"}), (rear, {"r"}))
    assert front.answered["f"][1] == rear.answered["r"][1] == "instance"
    assert predictor.encoded_batches == [[("front", 3)], [("rear", 3)]]  # one by one, by each camera's job
    assert worker.cameras["front"].stats.errors == worker.cameras["rear"].stats.errors == 0
