"""The inference worker's queue policy and threading, on the engine with a fake model (these tests
are about scheduling; tests/node/test_engine.py checks answers on the real model): under a backlog
every prompt is still answered once, the wait before a prompt is served is bounded by
max_prompt_wait_s, and every model call runs on the worker's one thread."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ovsam_model.prompts import PromptSpec
from ovsam_ros.engine import Answer, EngineSettings, PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.prompt_conversion import PromptRequest
from ovsam_ros.worker import PROMPTS_PER_ROUND, InferenceWorker
from tests.node.fake_predictor import FakePredictor


@pytest.fixture
def predictor():
    # Times of the order of a small model on a CPU, so that rounds and waits are measurable.
    return FakePredictor(["red star", "blue cross"], encode_s=0.02, decode_s_per_prompt=0.002)


@pytest.fixture
def engine(predictor):
    engine = PerceptionEngine(predictor, EngineSettings(frame_buffer_size=2))
    engine.add_frame(Frame(stamp_ns=1, rgb=np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    return engine


class Recorder:
    """Collects what the worker publishes, with the time each answer left."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered: dict[str, tuple[float, str]] = {}
        self.duplicates: list[str] = []
        self.round_sizes: list[int] = []

    def __call__(self, answer: Answer) -> None:
        now = time.monotonic()
        with self.lock:
            served = [r.prediction.prompt_id for r in answer.instances]
            if served:
                self.round_sizes.append(len(served))
            outcomes = [(p, "instance") for p in served] + [(f.prompt_id, f.reason) for f in answer.failures]
            for prompt_id, outcome in outcomes:
                if prompt_id in self.answered:
                    self.duplicates.append(prompt_id)
                self.answered[prompt_id] = (now, outcome)

    def wait_for(self, ids: set[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if ids <= set(self.answered):
                    return
            time.sleep(0.01)
        raise AssertionError(f"{len(ids - set(self.answered))} prompts never answered")


def backlog(count: int, received_at: float | None = None) -> list[PromptRequest]:
    now = time.monotonic() if received_at is None else received_at
    return [PromptRequest(PromptSpec(prompt_id=f"p{i}", box=np.array([4.0 + i % 20, 4.0, 40.0, 50.0])),
                          received_at=now) for i in range(count)]


def run_backlog(engine, max_wait: float, requests: list[PromptRequest]) -> Recorder:
    recorder = Recorder()
    worker = InferenceWorker(engine, recorder, max_pending_prompts=10_000, max_prompt_wait_s=max_wait,
                             log_error=lambda message: None)
    worker.start()
    try:
        worker.submit_prompts(requests)
        recorder.wait_for({r.prompt_id for r in requests})
    finally:
        worker.stop()
    assert recorder.duplicates == []
    return recorder


def test_a_prompt_that_waited_too_long_is_answered_overloaded(engine):
    recorder = run_backlog(engine, 1.0, backlog(3, received_at=time.monotonic() - 5.0))
    for _, outcome in recorder.answered.values():
        assert outcome.startswith("overloaded: waited ") and "max_prompt_wait_s 1" in outcome


def test_a_backlog_is_served_in_rounds_within_the_wait_bound(engine):
    requests = backlog(20 * PROMPTS_PER_ROUND)
    unbounded = run_backlog(engine, 1e9, backlog(20 * PROMPTS_PER_ROUND))
    slowest_unbounded = max(t - requests[0].received_at for t, _ in unbounded.answered.values())
    assert all(outcome == "instance" for _, outcome in unbounded.answered.values())
    assert max(unbounded.round_sizes) <= PROMPTS_PER_ROUND
    # A bound well under what the backlog takes to clear: the tail must be failed, not served late.
    max_wait = slowest_unbounded / 4
    requests = backlog(20 * PROMPTS_PER_ROUND)
    bounded = run_backlog(engine, max_wait, requests)
    outcomes = [outcome for _, outcome in bounded.answered.values()]
    served = [t - requests[0].received_at for t, outcome in bounded.answered.values() if outcome == "instance"]
    assert outcomes.count("instance") >= PROMPTS_PER_ROUND
    assert sum(o.startswith("overloaded: waited") for o in outcomes) >= len(requests) // 2
    longest_round = slowest_unbounded / 20 * 3  # generous: one round of the unbounded run, three times over
    assert max(served) <= max_wait + longest_round


def test_per_frame_work_takes_turns_with_a_prompt_backlog(engine):
    progress: list[tuple[int, int]] = []  # (frames processed, prompts answered) at each publish
    worker: InferenceWorker

    def publish(answer: Answer) -> None:
        progress.append((worker.stats.frames_processed, worker.stats.prompts_answered + worker.stats.prompts_failed))

    worker = InferenceWorker(engine, publish, max_pending_prompts=10_000, max_prompt_wait_s=1e9,
                             log_error=lambda message: None)
    requests = backlog(10 * PROMPTS_PER_ROUND)
    worker.submit_prompts(requests)
    worker.submit_frame(engine.latest_frame(), ("red star",))
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while not (progress and progress[-1] == (1, len(requests))):
            assert time.monotonic() < deadline, progress[-3:]
            time.sleep(0.01)
    finally:
        worker.stop()
    first_frame_answer = next(i for i, (frames, _) in enumerate(progress) if frames == 1)
    # The text query ran after one round of prompts, not after the whole backlog.
    assert progress[first_frame_answer][1] <= 2 * PROMPTS_PER_ROUND


def test_every_model_call_runs_on_the_worker_thread(engine, predictor):
    """worker.py's invariant: the engine holds no lock around the model because only the worker's
    thread calls it, whoever submitted the work (prompts, frames, service calls)."""
    recorder = Recorder()
    worker = InferenceWorker(engine, recorder, max_pending_prompts=10_000, max_prompt_wait_s=1e9,
                             log_error=lambda message: None)
    worker.start()
    try:
        def producer(index: int) -> None:
            worker.submit_prompts(backlog(5))
            engine.add_frame(Frame(stamp_ns=10 + index, rgb=np.zeros((64, 64, 3), np.uint8)))
            worker.submit_frame(engine.latest_frame(), ("red star",))

        producers = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        assert worker.call(lambda: engine.set_vocabulary(["mug", "bottle"]), timeout=30) == 2
        assert worker.call(lambda: engine.set_vocabulary(None), timeout=30) == 1  # the model's own
        recorder.wait_for({f"p{i}" for i in range(5)})
        worker_thread = worker._thread.ident
    finally:
        worker.stop()
    methods = {method for method, _ in predictor.calls}
    assert {"set_image", "predict", "set_vocabulary"} <= methods
    assert {thread for _, thread in predictor.calls} == {worker_thread}
