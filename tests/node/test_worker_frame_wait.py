"""A prompt stamped with a frame that has not arrived yet waits for it (future_stamp_wait_s), on the
worker with a fake model: answered on that frame when it comes, failed when it does not (after the
wait, or as soon as a newer frame shows it was lost), and the pending limit answers `overloaded` at
once. The waits here are lower bounds or generous deadlines, so machine load cannot change a result."""
from __future__ import annotations

import time

import numpy as np
import pytest

from ovsam_model.prompts import PromptSpec
from ovsam_ros.engine import EngineSettings, PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.prompt_conversion import PromptRequest
from ovsam_ros.worker import InferenceWorker
from tests.node.fake_predictor import FakePredictor
from tests.node.test_worker_queue_policy import Recorder

HANG_S = 60.0  # only a hang takes this long


def frame(stamp_ns: int) -> Frame:
    return Frame(stamp_ns=stamp_ns, rgb=np.zeros((48, 64, 3), np.uint8))


def stamped(prompt_id: str, stamp_ns: int) -> PromptRequest:
    return PromptRequest(PromptSpec(prompt_id=prompt_id, box=np.array([4.0, 4.0, 30.0, 30.0])), stamp_ns=stamp_ns)


@pytest.fixture
def started():
    """A running worker on the fake model with frame 1 buffered, and what it published."""
    workers: list[InferenceWorker] = []

    def start(future_stamp_wait_s: float, max_pending_prompts: int = 1000) -> tuple[InferenceWorker, Recorder]:
        engine = PerceptionEngine(FakePredictor(), EngineSettings(frame_buffer_size=4))
        engine.add_frame(frame(1))
        recorder = Recorder()
        worker = InferenceWorker(engine, recorder, max_pending_prompts=max_pending_prompts,
                                 max_prompt_wait_s=HANG_S * 2, future_stamp_wait_s=future_stamp_wait_s,
                                 log_error=lambda message: None)
        worker.start()
        workers.append(worker)
        return worker, recorder

    yield start
    for worker in workers:
        worker.stop()


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + HANG_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_prompt_for_a_frame_still_to_come_is_answered_on_it_when_it_arrives(started):
    worker, recorder = started(future_stamp_wait_s=HANG_S)
    published_frames: list[int] = []
    original = recorder.__call__

    def record(answer) -> None:
        published_frames.append(answer.frame.stamp_ns)
        original(answer)

    worker.cameras[""].publish = record  # the single camera's
    worker.submit_prompts([stamped("early", 5), stamped("now", 1)])
    wait_until(lambda: worker.prompts_awaiting_frame == 1 and "now" in recorder.answered, "the prompt to wait")
    assert "early" not in recorder.answered  # waiting, not failed
    worker.add_frame(frame(5))
    recorder.wait_for({"early"})
    assert recorder.answered["early"][1] == "instance"
    assert published_frames[-1] == 5 and worker.prompts_awaiting_frame == 0
    assert recorder.duplicates == []


def test_a_frame_that_never_comes_fails_its_prompt_after_the_wait(started):
    wait_s = 0.3
    worker, recorder = started(future_stamp_wait_s=wait_s)
    request = stamped("orphan", 5)
    worker.submit_prompts([request])
    recorder.wait_for({"orphan"})
    answered_at, reason = recorder.answered["orphan"]
    assert reason.startswith("no buffered frame with stamp 0.000000005")
    assert answered_at - request.received_at >= wait_s  # not before the wait was over
    assert worker.prompts_awaiting_frame == 0


def test_a_newer_frame_ends_the_wait_for_a_lost_one(started):
    worker, recorder = started(future_stamp_wait_s=HANG_S)
    worker.submit_prompts([stamped("lost", 5)])
    wait_until(lambda: worker.prompts_awaiting_frame == 1, "the prompt to wait")
    worker.add_frame(frame(7))  # frame 5 was dropped on the way (sensor_data QoS): it will not come
    recorder.wait_for({"lost"})
    assert recorder.answered["lost"][1].startswith("no buffered frame with stamp 0.000000005")


def test_zero_wait_fails_a_future_stamp_at_once_and_stop_answers_waiting_prompts(started):
    worker, recorder = started(future_stamp_wait_s=0.0)
    worker.submit_prompts([stamped("at-once", 5)])
    recorder.wait_for({"at-once"})
    assert recorder.answered["at-once"][1].startswith("no buffered frame with stamp")

    waiting, waiting_recorder = started(future_stamp_wait_s=HANG_S)
    waiting.submit_prompts([stamped("pending", 9)])
    wait_until(lambda: waiting.prompts_awaiting_frame == 1, "the prompt to wait")
    waiting.stop()
    assert waiting_recorder.answered["pending"][1] == "node shutting down"


def test_past_max_pending_prompts_new_prompts_are_answered_overloaded_at_once(started):
    """Prompts waiting for a frame count as pending: with 3 allowed and 3 waiting, the next two are
    answered `overloaded` during the submit call itself, the waiting ones are not touched."""
    worker, recorder = started(future_stamp_wait_s=HANG_S, max_pending_prompts=3)
    worker.submit_prompts([stamped(f"wait-{i}", 5) for i in range(3)])
    wait_until(lambda: worker.prompts_awaiting_frame == 3, "three prompts to wait")
    worker.submit_prompts([stamped("over-1", 1), stamped("over-2", 0)])
    with recorder.lock:  # answered before submit_prompts returned, not by the worker thread later
        assert {pid: outcome for pid, (_, outcome) in recorder.answered.items()} == {
            "over-1": "overloaded: 3 prompts already pending", "over-2": "overloaded: 3 prompts already pending"}
    assert worker.stats.prompts_rejected_overload == 2
    worker.add_frame(frame(5))
    recorder.wait_for({"wait-0", "wait-1", "wait-2"})
    assert {recorder.answered[f"wait-{i}"][1] for i in range(3)} == {"instance"}
