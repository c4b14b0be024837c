"""The inference worker's queue policy and threading, on the engine with a fake model (these tests
are about scheduling; tests/node/test_engine.py checks answers on the real model): under a backlog
every prompt is still answered once, the wait before a prompt is served is bounded by
max_prompt_wait_s, and every model call runs on the worker's one thread.

The wait bound is checked on a virtual clock (the worker's time.monotonic, advanced by the fake
model's work), so how busy the machine is cannot change the outcome."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest

from ovsam_model.prompts import PromptSpec
from ovsam_ros import worker as worker_module
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

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.answered: dict[str, tuple[float, str]] = {}
        self.duplicates: list[str] = []
        self.round_sizes: list[int] = []

    def __call__(self, answer: Answer) -> None:
        now = self.clock()
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


class VirtualClock:
    """The worker's clock in the wait-bound test: time passes only while the fake model works."""

    def __init__(self) -> None:
        self._now = 1_000.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def run_backlog(engine, max_wait: float, requests: list[PromptRequest],
                clock: Callable[[], float] = time.monotonic) -> Recorder:
    recorder = Recorder(clock)
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


def test_a_backlog_is_served_in_rounds_within_the_wait_bound(monkeypatch):
    clock = VirtualClock()
    monkeypatch.setattr(worker_module, "time", SimpleNamespace(monotonic=clock.now, perf_counter=time.perf_counter))
    encode_s, decode_s = 0.02, 0.002

    def virtual_engine() -> PerceptionEngine:
        predictor = FakePredictor(["red star"], encode_s=encode_s, decode_s_per_prompt=decode_s, sleep=clock.advance)
        engine = PerceptionEngine(predictor, EngineSettings(frame_buffer_size=2))
        engine.add_frame(Frame(stamp_ns=1, rgb=np.zeros((64, 64, 3), np.uint8)))
        return engine

    unbounded = run_backlog(virtual_engine(), 1e9, backlog(20 * PROMPTS_PER_ROUND, clock.now()), clock.now)
    assert {outcome for _, outcome in unbounded.answered.values()} == {"instance"}
    assert len(unbounded.answered) == 20 * PROMPTS_PER_ROUND and max(unbounded.round_sizes) <= PROMPTS_PER_ROUND
    # The bound is a few rounds, well under the 20 the backlog takes: the tail must be failed, not served late.
    longest_round = encode_s + PROMPTS_PER_ROUND * decode_s
    max_wait = 5 * longest_round
    requests = backlog(20 * PROMPTS_PER_ROUND, clock.now())
    bounded = run_backlog(virtual_engine(), max_wait, requests, clock.now)
    arrived = requests[0].received_at
    served = [t - arrived for t, outcome in bounded.answered.values() if outcome == "instance"]
    failed = [(t - arrived, outcome) for t, outcome in bounded.answered.values() if outcome != "instance"]
    assert len(served) >= PROMPTS_PER_ROUND and len(failed) >= len(requests) // 2
    assert max(served) <= max_wait + longest_round  # worker.py's bound: the wait, plus the round in progress
    for waited, outcome in failed:  # failed only once the wait was over, with the reason
        assert outcome.startswith("overloaded: waited") and waited > max_wait, (waited, outcome)


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
