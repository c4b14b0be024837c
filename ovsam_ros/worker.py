"""Runs the engine off the executor thread, with a queue policy that bounds latency and memory.

- Prompts are never dropped: every pending prompt is answered (a result or an explicit failure).
  Past `max_pending_prompts` new prompts are failed at once with "overloaded" rather than queued, and
  before each round of work every prompt that has waited longer than `max_prompt_wait_s` is failed
  with "overloaded". Prompts are taken `PROMPTS_PER_ROUND` at a time, so the node answers a prompt at
  most about max_prompt_wait_s + one round of work after it arrived, however large the backlog (with
  several cameras, + one round of each other camera with work: see below).
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
- Several cameras share the one thread: each camera has its own queue (its prompts, the prompts
  waiting for its frames, its newest frame's work), its own engine (frame buffer, tracks) and its own
  statistics, and the policy above holds per camera (max_pending_prompts counts that camera's pending
  prompts; the Segment service's calls are shared by all). The thread serves the cameras with work in turn
  (round-robin, one round or one frame job each), so a flood of prompts on one camera delays another
  camera's prompt by at most one round per camera, never by its backlog; overdue prompts are failed on
  every camera before each round, so max_prompt_wait_s bounds every camera's queue.
- One image encoder pass for several cameras: before serving a camera, the frames that its job and the
  next job of every other camera with work will need are encoded together, as one batch
  (`PerceptionEngine.encode_frames`; the cameras share one predictor), so when two cameras' frames
  wait, the encoder runs once for both and each camera's turn finds its frame's features cached. A
  failed batch is not an error of its own: each job then encodes its frame alone and answers any
  failure on its own prompts.
- Every call into the model (the engine's answer/step/segment_image/set_vocabulary, hence the
  predictor's set_image/predict/find/set_vocabulary) runs on this one thread: the engine relies on it
  and holds no lock of its own around the model.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .engine import Answer, PerceptionEngine
from .frame_buffer import Frame, FrameNotBuffered
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
    frames_encoded_together: int = 0  # encoder passes this camera's frame shared with another camera's
    errors: int = 0
    last_error: str = ""
    stage_ms: dict[str, deque] = field(default_factory=dict)

    def record(self, timings_ms: dict[str, float]) -> None:
        for stage, value in timings_ms.items():
            self.stage_ms.setdefault(stage, deque(maxlen=200)).append(value)


class CameraQueue:
    """One camera's share of the worker: its engine, where its answers go, its queues and statistics.
    The queues are guarded by the worker's lock."""

    def __init__(self, name: str, engine: PerceptionEngine, publish: Callable[[Answer], None]) -> None:
        self.name = name
        self.engine = engine
        self.publish = publish
        self.stats = WorkerStats()
        self.prompts: deque[PromptRequest] = deque()
        self.awaiting_frame: deque[PromptRequest] = deque()  # stamped with a frame not yet arrived
        self.frame: tuple[Frame, tuple[str, ...]] | None = None
        self.prompt_round_last = False

    @property
    def pending(self) -> int:
        return len(self.prompts) + len(self.awaiting_frame)

    def has_work(self) -> bool:
        return bool(self.prompts) or self.frame is not None


class InferenceWorker:
    def __init__(self, engine: PerceptionEngine, publish: Callable[[Answer], None], *,
                 max_pending_prompts: int = 1000, max_prompt_wait_s: float = 2.0,
                 future_stamp_wait_s: float = 0.0, log_error: Callable[[str], None] = print,
                 camera: str = "") -> None:
        """`engine` and `publish` are the first camera's (named `camera`); add_camera adds more."""
        self._log_error = log_error
        self.max_pending_prompts = max_pending_prompts
        self.max_prompt_wait_s = max_prompt_wait_s
        self.future_stamp_wait_s = future_stamp_wait_s
        self.cameras: dict[str, CameraQueue] = {camera: CameraQueue(camera, engine, publish)}
        self._calls: deque[tuple[Callable[[], Any], Future]] = deque()
        self._wake = threading.Condition()
        self._running = False
        self._next_camera = 0  # round-robin position among the cameras
        self._thread: threading.Thread | None = None

    def add_camera(self, name: str, engine: PerceptionEngine, publish: Callable[[Answer], None]) -> None:
        """Another camera served by this thread (before start)."""
        if name in self.cameras:
            raise ValueError(f"camera '{name}' added twice")
        with self._wake:
            self.cameras = {**self.cameras, name: CameraQueue(name, engine, publish)}

    @property
    def engine(self) -> PerceptionEngine:
        """The first camera's engine (the only one in a single-camera node)."""
        return self._first.engine

    @property
    def stats(self) -> WorkerStats:
        """The first camera's statistics (the only one's in a single-camera node)."""
        return self._first.stats

    @property
    def _first(self) -> CameraQueue:
        return next(iter(self.cameras.values()))

    def _queue(self, camera: str | None) -> CameraQueue:
        return self._first if camera is None else self.cameras[camera]

    # -- producers (any thread) ------------------------------------------------------------------
    def submit_prompts(self, requests: Sequence[PromptRequest], camera: str | None = None) -> None:
        """Queue prompts on `camera`'s frames (None: the first camera)."""
        queue = self._queue(camera)
        rejected: list[PromptRequest] = []
        with self._wake:
            queue.stats.prompts_received += len(requests)
            for request in requests:
                if queue.pending >= self.max_pending_prompts:
                    rejected.append(request)
                else:
                    queue.prompts.append(request)
            self._wake.notify()
        if rejected:
            queue.stats.prompts_rejected_overload += len(rejected)
            reason = f"overloaded: {self.max_pending_prompts} prompts already pending"
            self._emit_failures(queue, [PromptFailure(r.prompt_id, reason) for r in rejected])

    def add_frame(self, frame: Frame, camera: str | None = None) -> None:
        """A camera frame arrived: buffer it, and wake the thread if a prompt waits for a frame."""
        queue = self._queue(camera)
        queue.engine.add_frame(frame)
        with self._wake:
            if queue.awaiting_frame:
                self._wake.notify()

    def submit_frame(self, frame: Frame, text_queries: Sequence[str] = (), camera: str | None = None) -> None:
        """Offer a new frame for tracks / text queries; replaces (and counts) one not yet started."""
        queue = self._queue(camera)
        with self._wake:
            if queue.frame is not None:
                queue.stats.frames_dropped += 1
            queue.frame = (frame, tuple(text_queries))
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

    def awaiting_frame_of(self, camera: str | None = None) -> int:
        """Prompts of `camera` set aside until the frame they are stamped with arrives."""
        with self._wake:
            return len(self._queue(camera).awaiting_frame)

    def queue_depth_of(self, camera: str | None = None) -> int:
        """`camera`'s pending prompts and frame job, plus the synchronous calls every camera shares."""
        queue = self._queue(camera)
        with self._wake:
            return queue.pending + len(self._calls) + (1 if queue.frame else 0)

    @property
    def prompts_awaiting_frame(self) -> int:
        return self.awaiting_frame_of()

    @property
    def queue_depth(self) -> int:
        return self.queue_depth_of()

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
            pending = {}
            for queue in self.cameras.values():
                pending[queue.name] = list(queue.awaiting_frame) + list(queue.prompts)
                queue.prompts, queue.awaiting_frame, queue.frame = deque(), deque(), None
            calls, self._calls = list(self._calls), deque()
        for name, requests in pending.items():
            if requests:
                self._emit(self.cameras[name], Answer(
                    frame=None, failures=[PromptFailure(r.prompt_id, "node shutting down") for r in requests]))
        for _, future in calls:
            future.set_exception(RuntimeError("node shutting down"))

    # -- the inference thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    now = time.monotonic()
                    for queue in self.cameras.values():
                        self._release_awaiting(queue, now)
                    if not self._running or self._calls or any(q.has_work() for q in self.cameras.values()):
                        break
                    self._wake.wait(timeout=self._idle_wait_s(time.monotonic()))
                if not self._running:
                    return
                calls, self._calls = list(self._calls), deque()
                # Every camera's overdue prompts, before any camera's round: the wait bound holds per camera.
                overdue = [(queue, self._take_overdue(queue)) for queue in self.cameras.values()]
                serving = self._next_with_work()
                frame_job: tuple[Frame, tuple[str, ...]] | None = None
                prompts: list[PromptRequest] = []
                if serving is not None:
                    queue = serving
                    # Prompts and per-frame work take turns, so a steady stream of prompts cannot stop
                    # tracks and the text query, nor the other way round.
                    if queue.frame is not None and (queue.prompt_round_last or not queue.prompts):
                        frame_job, queue.frame = queue.frame, None
                    else:
                        prompts = self._take_round(queue, time.monotonic())
                    queue.prompt_round_last = bool(prompts)
                    ahead = self._frames_ahead(queue, frame_job, prompts) if len(self.cameras) > 1 else []
            for function, future in calls:
                # A failing call (e.g. a bad vocabulary) is the caller's answer, not a worker fault.
                try:
                    future.set_result(function())
                except Exception as error:  # noqa: BLE001
                    future.set_exception(error)
            for overdue_queue, expired in overdue:
                self._fail_overdue(overdue_queue, expired)
            if serving is None:
                continue
            served = serving
            if len(ahead) > 1:
                self._encode_together(served, ahead)
            if prompts:
                self._guard(served, "prompts", lambda: self._answer_prompts(served, prompts), fail_prompts=prompts)
            if frame_job is not None:
                job = frame_job
                self._guard(served, "frame", lambda: self._step(served, *job))

    def _frames_ahead(self, serving: CameraQueue, frame_job: tuple[Frame, tuple[str, ...]] | None,
                      prompts: list[PromptRequest]) -> list[tuple[CameraQueue, Frame]]:
        """The frames the job just taken for `serving` and the next job of every other camera with work
        will encode; call under the lock."""
        ahead: list[tuple[CameraQueue, Frame]] = []
        for queue in self.cameras.values():
            if queue is serving:
                frames = [frame_job[0]] if frame_job is not None else self._prompt_frames(queue, prompts)
            elif queue.frame is not None and (queue.prompt_round_last or not queue.prompts):
                frames = [queue.frame[0]]
            else:
                # islice: the next round only, not a copy of a backlog that may hold thousands
                frames = self._prompt_frames(queue, list(itertools.islice(queue.prompts, PROMPTS_PER_ROUND)))
            ahead.extend((queue, frame) for frame in frames)
        return ahead

    @staticmethod
    def _prompt_frames(queue: CameraQueue, prompts: Sequence[PromptRequest]) -> list[Frame]:
        frames: dict[int, Frame] = {}
        for request in prompts:
            if request.stamp_ns not in frames:
                try:
                    frame = queue.engine.frames.get(request.stamp_ns)
                except FrameNotBuffered:
                    continue
                frames[request.stamp_ns] = frame
        return list(frames.values())

    def _encode_together(self, serving: CameraQueue, ahead: list[tuple[CameraQueue, Frame]]) -> None:
        """Encode the cameras' next frames as one batch (see the module's docstring)."""
        started = time.perf_counter()
        try:
            encoded = {frame.key for frame in serving.engine.encode_frames([frame for _, frame in ahead])}
        except Exception:  # noqa: BLE001 - each job then encodes its own frame and answers its own failure
            return
        elapsed_ms = (time.perf_counter() - started) * 1e3
        # Only the cameras whose frame was in the batch (another camera's may have been cached already).
        for queue in {id(queue): queue for queue, frame in ahead if frame.key in encoded}.values():
            queue.stats.frames_encoded_together += 1
            queue.stats.record({"encode_together": elapsed_ms})

    def _next_with_work(self) -> CameraQueue | None:
        """The next camera with work after the one served last (round-robin); call under the lock."""
        queues = list(self.cameras.values())
        for offset in range(len(queues)):
            index = (self._next_camera + offset) % len(queues)
            if queues[index].has_work():
                self._next_camera = index + 1
                return queues[index]
        return None

    def _waits_for_frame(self, queue: CameraQueue, request: PromptRequest, now: float) -> bool:
        """Whether this prompt's frame may still come and its wait for it is not over."""
        return (now - request.received_at < self.future_stamp_wait_s
                and queue.engine.frames.is_future(request.stamp_ns))

    def _release_awaiting(self, queue: CameraQueue, now: float) -> None:
        """Prompts whose frame arrived, or whose wait for it is over, rejoin the front of their camera's
        queue (in their order). Call under the lock."""
        if not queue.awaiting_frame:
            return
        waiting: deque[PromptRequest] = deque()
        released: list[PromptRequest] = []
        for request in queue.awaiting_frame:
            (waiting if self._waits_for_frame(queue, request, now) else released).append(request)
        queue.awaiting_frame = waiting
        queue.prompts.extendleft(reversed(released))

    def _idle_wait_s(self, now: float) -> float:
        """How long the idle thread may sleep: until the first waiting prompt's wait for its frame ends."""
        waiting = [r.received_at for queue in self.cameras.values() for r in queue.awaiting_frame]
        if not waiting:
            return 0.5
        ends = min(waiting) + self.future_stamp_wait_s
        return min(0.5, max(0.001, ends - now))

    def _take_round(self, queue: CameraQueue, now: float) -> list[PromptRequest]:
        """Up to PROMPTS_PER_ROUND of the camera's prompts to answer now; those whose frame is still to
        come are set aside to wait for it. Call under the lock."""
        prompts: list[PromptRequest] = []
        while queue.prompts and len(prompts) < PROMPTS_PER_ROUND:
            request = queue.prompts.popleft()
            if self._waits_for_frame(queue, request, now):
                queue.awaiting_frame.append(request)
            else:
                prompts.append(request)
        return prompts

    def _take_overdue(self, queue: CameraQueue) -> list[tuple[PromptRequest, float]]:
        """Remove the camera's prompts that waited past max_prompt_wait_s (the oldest are first); call
        under the lock."""
        now, limit = time.monotonic(), self.max_prompt_wait_s
        overdue = []
        while queue.prompts and now - queue.prompts[0].received_at > limit:
            request = queue.prompts.popleft()
            overdue.append((request, now - request.received_at))
        if queue.prompts:
            queue.stats.record({"prompt_wait": (now - queue.prompts[0].received_at) * 1e3})
        return overdue

    def _fail_overdue(self, queue: CameraQueue, overdue: list[tuple[PromptRequest, float]]) -> None:
        if not overdue:
            return
        queue.stats.prompts_expired_in_queue += len(overdue)
        limit = self.max_prompt_wait_s
        self._emit_failures(queue, [
            PromptFailure(r.prompt_id, f"overloaded: waited {w:.1f} s in the queue (max_prompt_wait_s {limit:g})")
            for r, w in overdue])

    def _answer_prompts(self, queue: CameraQueue, prompts: list[PromptRequest]) -> None:
        for answer in queue.engine.answer(prompts):
            self._emit(queue, answer)

    def _step(self, queue: CameraQueue, frame: Frame, text_queries: tuple[str, ...]) -> None:
        answer = queue.engine.step(frame, text_queries)
        queue.stats.frames_processed += 1
        if answer is not None:
            self._emit(queue, answer)

    def _emit_failures(self, queue: CameraQueue, failures: list[PromptFailure]) -> None:
        """Prompts answered with a failure outside any frame's work: attached to the camera's latest frame."""
        self._emit(queue, Answer(frame=queue.engine.latest_frame(), failures=failures))

    def _emit(self, queue: CameraQueue, answer: Answer) -> None:
        stats = queue.stats
        stats.prompts_answered += len({i.prediction.prompt_id for i in answer.instances if i.prediction.prompt_id})
        stats.prompts_failed += len(answer.failures)
        stats.record(answer.timings_ms)
        started = time.perf_counter()
        try:
            queue.publish(answer)
        except Exception as error:  # noqa: BLE001 - a publishing problem must not stop inference
            self._note_error(queue, f"publishing failed: {error}")
        stats.record({"convert_publish": (time.perf_counter() - started) * 1e3})

    def _guard(self, queue: CameraQueue, what: str, action: Callable[[], None],
               fail_prompts: list[PromptRequest] | None = None) -> None:
        try:
            action()
        except Exception as error:  # noqa: BLE001 - the worker thread must survive anything
            self._note_error(queue, f"{what} failed: {type(error).__name__}: {error}")
            if fail_prompts:
                self._emit_failures(queue, [PromptFailure(r.prompt_id, f"internal error: {error}")
                                            for r in fail_prompts])

    def _note_error(self, queue: CameraQueue, message: str) -> None:
        queue.stats.errors += 1
        queue.stats.last_error = message
        try:
            self._log_error(message)
        except Exception:  # noqa: BLE001
            pass
