"""Runs the engine off the executor thread, with a queue policy that bounds latency and memory.

- Prompts are never dropped: every pending prompt is answered (a result or an explicit failure).
  Past `max_pending_prompts` new prompts are failed at once with "overloaded" rather than queued, and
  before each round of work every prompt that has waited longer than `max_prompt_wait_s` is failed
  with "overloaded". Prompts are taken `PROMPTS_PER_ROUND` at a time, so the node answers a prompt at
  most about max_prompt_wait_s + one round of work after it arrived, however large the backlog.
- A prompt stamped with a frame that has not arrived yet (newer than every buffered frame: a small
  prompt message can overtake its image through DDS) waits for that frame, apart from the queue, up to
  `future_stamp_wait_s` after it arrived; it rejoins the front of the queue when the frame arrives
  (add_frame), and when the wait is over, or a newer frame shows that its own was lost, it is answered
  by the engine with the failure "no buffered frame with stamp ...". Waiting prompts count against
  max_pending_prompts and are answered on stop like queued ones. future_stamp_wait_s is below
  max_prompt_wait_s (settings.py checks it), so such a prompt is never also failed as "overloaded" for
  the time it spent waiting for its frame.
- Per-frame work (tracks, the standing text query) keeps only the newest frame: when the model is
  slower than the camera, older frames are skipped and counted, so latency stays bounded. It takes
  turns with prompt rounds.
- Synchronous calls (the Segment service) run on the same thread, between the other jobs.
- Every call into the model (the engine's answer/step/segment_image/set_vocabulary, hence the
  predictor's set_image/predict/find/set_vocabulary) runs on this one thread: the engine relies on it
  and holds no lock of its own around the model.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .engine import Answer, PerceptionEngine
from .frame_buffer import Frame
from .prompt_conversion import PromptFailure, PromptRequest

# Small enough that one round (one image encoding + this many decodes) stays well under a second on a
# CPU, large enough that batching still pays.
PROMPTS_PER_ROUND = 32


@dataclass
class WorkerStats:
    prompts_received: int = 0
    prompts_answered: int = 0
    prompts_failed: int = 0
    prompts_rejected_overload: int = 0
    prompts_expired_in_queue: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    errors: int = 0
    last_error: str = ""
    stage_ms: dict[str, deque] = field(default_factory=dict)

    def record(self, timings_ms: dict[str, float]) -> None:
        for stage, value in timings_ms.items():
            self.stage_ms.setdefault(stage, deque(maxlen=200)).append(value)


class InferenceWorker:
    def __init__(self, engine: PerceptionEngine, publish: Callable[[Answer], None], *,
                 max_pending_prompts: int = 1000, max_prompt_wait_s: float = 2.0,
                 future_stamp_wait_s: float = 0.0, log_error: Callable[[str], None] = print) -> None:
        self.engine = engine
        self._publish = publish
        self._log_error = log_error
        self.max_pending_prompts = max_pending_prompts
        self.max_prompt_wait_s = max_prompt_wait_s
        self.future_stamp_wait_s = future_stamp_wait_s
        self.stats = WorkerStats()
        self._prompts: deque[PromptRequest] = deque()
        self._awaiting_frame: deque[PromptRequest] = deque()  # stamped with a frame not yet arrived
        self._calls: deque[tuple[Callable[[], Any], Future]] = deque()
        self._frame: tuple[Frame, tuple[str, ...]] | None = None
        self._wake = threading.Condition()
        self._running = False
        self._prompt_round_last = False
        self._thread: threading.Thread | None = None

    # -- producers (any thread) ------------------------------------------------------------------
    def submit_prompts(self, requests: Sequence[PromptRequest]) -> None:
        rejected: list[PromptRequest] = []
        with self._wake:
            self.stats.prompts_received += len(requests)
            for request in requests:
                if len(self._prompts) + len(self._awaiting_frame) >= self.max_pending_prompts:
                    rejected.append(request)
                else:
                    self._prompts.append(request)
            self._wake.notify()
        if rejected:
            self.stats.prompts_rejected_overload += len(rejected)
            reason = f"overloaded: {self.max_pending_prompts} prompts already pending"
            self._emit_failures([PromptFailure(r.prompt_id, reason) for r in rejected])

    def add_frame(self, frame: Frame) -> None:
        """A camera frame arrived: buffer it, and wake the thread if a prompt waits for a frame."""
        self.engine.add_frame(frame)
        with self._wake:
            if self._awaiting_frame:
                self._wake.notify()

    def submit_frame(self, frame: Frame, text_queries: Sequence[str] = ()) -> None:
        """Offer a new frame for tracks / text queries; replaces (and counts) one not yet started."""
        with self._wake:
            if self._frame is not None:
                self.stats.frames_dropped += 1
            self._frame = (frame, tuple(text_queries))
            self._wake.notify()

    def submit_call(self, function: Callable[[], Any]) -> Future:
        """Run `function` on the inference thread, between the other jobs; its result or exception
        arrives in the returned future."""
        future: Future = Future()
        with self._wake:
            self._calls.append((function, future))
            self._wake.notify()
        return future

    def call(self, function: Callable[[], Any], timeout: float) -> Any:
        """submit_call, and wait for the result (raises its exception)."""
        return self.submit_call(function).result(timeout=timeout)

    @property
    def prompts_awaiting_frame(self) -> int:
        """Prompts set aside until the frame they are stamped with arrives."""
        with self._wake:
            return len(self._awaiting_frame)

    @property
    def queue_depth(self) -> int:
        with self._wake:
            return (len(self._prompts) + len(self._awaiting_frame) + len(self._calls)
                    + (1 if self._frame else 0))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._run, name="ovsam-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._running = False
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        # Whatever is still queued gets an explicit answer: nothing is dropped silently.
        with self._wake:
            pending = list(self._awaiting_frame) + list(self._prompts)
            self._prompts, self._awaiting_frame = deque(), deque()
            calls, self._calls = list(self._calls), deque()
            self._frame = None
        if pending:
            self._emit(Answer(frame=None, failures=[PromptFailure(r.prompt_id, "node shutting down") for r in pending]))
        for _, future in calls:
            future.set_exception(RuntimeError("node shutting down"))

    # -- the inference thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    self._release_awaiting(time.monotonic())
                    if not self._running or self._prompts or self._calls or self._frame:
                        break
                    self._wake.wait(timeout=self._idle_wait_s(time.monotonic()))
                if not self._running:
                    return
                calls, self._calls = list(self._calls), deque()
                overdue = self._take_overdue()
                # Prompts and per-frame work take turns, so a steady stream of prompts cannot stop
                # tracks and the text query, nor the other way round.
                frame_turn = self._frame is not None and (self._prompt_round_last or not self._prompts)
                if frame_turn:
                    frame_job, self._frame, prompts = self._frame, None, []
                else:
                    frame_job = None
                    prompts = self._take_round(time.monotonic())
                self._prompt_round_last = bool(prompts)
            for function, future in calls:
                # A failing call (e.g. a bad vocabulary) is the caller's answer, not a worker fault.
                try:
                    future.set_result(function())
                except Exception as error:  # noqa: BLE001
                    future.set_exception(error)
            self._fail_overdue(overdue)
            if prompts:
                self._guard("prompts", lambda: self._answer_prompts(prompts),
                            fail_prompts=prompts)
            if frame_job is not None:
                self._guard("frame", lambda: self._step(*frame_job))

    def _waits_for_frame(self, request: PromptRequest, now: float) -> bool:
        """Whether this prompt's frame may still come and its wait for it is not over."""
        return (now - request.received_at < self.future_stamp_wait_s
                and self.engine.frames.is_future(request.stamp_ns))

    def _release_awaiting(self, now: float) -> None:
        """Prompts whose frame arrived, or whose wait for it is over, rejoin the front of the queue (in
        their order). Call under the lock."""
        if not self._awaiting_frame:
            return
        waiting: deque[PromptRequest] = deque()
        released: list[PromptRequest] = []
        for request in self._awaiting_frame:
            (waiting if self._waits_for_frame(request, now) else released).append(request)
        self._awaiting_frame = waiting
        self._prompts.extendleft(reversed(released))

    def _idle_wait_s(self, now: float) -> float:
        """How long the idle thread may sleep: until the first waiting prompt's wait for its frame ends."""
        if not self._awaiting_frame:
            return 0.5
        ends = min(r.received_at for r in self._awaiting_frame) + self.future_stamp_wait_s
        return min(0.5, max(0.001, ends - now))

    def _take_round(self, now: float) -> list[PromptRequest]:
        """Up to PROMPTS_PER_ROUND prompts to answer now; those whose frame is still to come are set
        aside to wait for it. Call under the lock."""
        prompts: list[PromptRequest] = []
        while self._prompts and len(prompts) < PROMPTS_PER_ROUND:
            request = self._prompts.popleft()
            if self._waits_for_frame(request, now):
                self._awaiting_frame.append(request)
            else:
                prompts.append(request)
        return prompts

    def _take_overdue(self) -> list[tuple[PromptRequest, float]]:
        """Remove the prompts that waited past max_prompt_wait_s (the oldest are first); call under the lock."""
        now, limit = time.monotonic(), self.max_prompt_wait_s
        overdue = []
        while self._prompts and now - self._prompts[0].received_at > limit:
            request = self._prompts.popleft()
            overdue.append((request, now - request.received_at))
        if self._prompts:
            self.stats.record({"prompt_wait": (now - self._prompts[0].received_at) * 1e3})
        return overdue

    def _fail_overdue(self, overdue: list[tuple[PromptRequest, float]]) -> None:
        if not overdue:
            return
        self.stats.prompts_expired_in_queue += len(overdue)
        limit = self.max_prompt_wait_s
        self._emit_failures([
            PromptFailure(r.prompt_id, f"overloaded: waited {w:.1f} s in the queue (max_prompt_wait_s {limit:g})")
            for r, w in overdue])

    def _answer_prompts(self, prompts: list[PromptRequest]) -> None:
        for answer in self.engine.answer(prompts):
            self._emit(answer)

    def _step(self, frame: Frame, text_queries: tuple[str, ...]) -> None:
        answer = self.engine.step(frame, text_queries)
        self.stats.frames_processed += 1
        if answer is not None:
            self._emit(answer)

    def _emit_failures(self, failures: list[PromptFailure]) -> None:
        """Prompts answered with a failure outside any frame's work: attached to the latest frame."""
        self._emit(Answer(frame=self.engine.latest_frame(), failures=failures))

    def _emit(self, answer: Answer) -> None:
        self.stats.prompts_answered += len({i.prediction.prompt_id for i in answer.instances if i.prediction.prompt_id})
        self.stats.prompts_failed += len(answer.failures)
        self.stats.record(answer.timings_ms)
        started = time.perf_counter()
        try:
            self._publish(answer)
        except Exception as error:  # noqa: BLE001 - a publishing problem must not stop inference
            self._note_error(f"publishing failed: {error}")
        self.stats.record({"convert_publish": (time.perf_counter() - started) * 1e3})

    def _guard(self, what: str, action: Callable[[], None], fail_prompts: list[PromptRequest] | None = None) -> None:
        try:
            action()
        except Exception as error:  # noqa: BLE001 - the worker thread must survive anything
            self._note_error(f"{what} failed: {type(error).__name__}: {error}")
            if fail_prompts:
                self._emit_failures([PromptFailure(r.prompt_id, f"internal error: {error}") for r in fail_prompts])

    def _note_error(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message
        try:
            self._log_error(message)
        except Exception:  # noqa: BLE001
            pass
