"""What the node does with frames and prompts, without ROS: look up the frame, validate, run the
predictor, turn every problem into a per-prompt failure, and keep tracks.

The node only converts messages into PromptRequests and Answers back into messages; everything here
is testable with a predictor and numpy arrays.

Threads: the model is called from one thread only, the inference worker's (worker.py), so the engine
holds no lock of its own around it. Frames are added and the latest frame or the track count read from
the executor thread; the frame buffer and the tracker lock for that.
"""
from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from ovsam_model.instances import InstancePrediction
from ovsam_model.predictor_protocol import Predictor
from ovsam_model.prompts import PromptError, PromptSpec

from .frame_buffer import Frame, FrameBuffer, FrameNotBuffered
from .prompt_conversion import PromptFailure, PromptRequest
from .tracking import MIN_MASK_SCORE, EmptyMaskError, Tracker, best_candidate, frame_classes


@dataclass
class EngineSettings:
    top_k: int = 5
    score_threshold: float = 0.0     # text-query instances below this label score are not published
    max_instances: int = 50          # cap per text query
    everything_points_per_side: int = 16
    frame_buffer_size: int = 8
    track_lost_after: int = 3
    track_min_mask_score: float = MIN_MASK_SCORE


@dataclass
class InstanceResult:
    prediction: InstancePrediction
    track_id: int = 0


@dataclass
class Answer:
    """Everything produced for one frame: published as one InstanceMaskArray."""

    frame: Frame | None           # None only when prompts failed before any image arrived
    instances: list[InstanceResult] = field(default_factory=list)
    failures: list[PromptFailure] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


class PerceptionEngine:
    """For one inference thread (every model call) plus any number of threads adding frames."""

    def __init__(self, predictor: Predictor, settings: EngineSettings | None = None) -> None:
        self.predictor = predictor
        self.settings = settings or EngineSettings()
        self.frames = FrameBuffer(self.settings.frame_buffer_size)
        self.tracker = Tracker(lost_after=self.settings.track_lost_after,
                               min_mask_score=self.settings.track_min_mask_score)

    # -- what the node reads and sets (any thread) -------------------------------------------------
    def add_frame(self, frame: Frame) -> None:
        self.frames.add(frame)

    def latest_frame(self) -> Frame | None:
        return self.frames.latest()

    @property
    def tracking(self) -> bool:
        """Whether any object is being tracked (then every new frame has work)."""
        return len(self.tracker) > 0

    def set_limits(self, *, top_k: int, score_threshold: float, max_instances: int) -> None:
        """The run-time parameters. A new settings object, not a change in place: the inference
        thread reads either the old limits or the new ones, never a mix."""
        self.settings = dataclasses.replace(self.settings, top_k=top_k, score_threshold=score_threshold,
                                            max_instances=max_instances)

    @property
    def vocabulary_size(self) -> int:
        return int(self.predictor.vocabulary.size)

    # -- prompts -------------------------------------------------------------------------------
    def answer(self, requests: Sequence[PromptRequest]) -> list[Answer]:
        """Answer every request: grouped by the frame it names; a missing frame fails its prompts."""
        by_stamp: dict[int, list[PromptRequest]] = defaultdict(list)
        for request in requests:
            by_stamp[request.stamp_ns].append(request)
        answers: list[Answer] = []
        orphans: list[PromptFailure] = []
        for stamp_ns, group in by_stamp.items():
            try:
                frame = self.frames.get(stamp_ns)
            except FrameNotBuffered as error:
                orphans.extend(PromptFailure(r.prompt_id, str(error)) for r in group)
                continue
            answers.append(self.answer_on_frame(frame, group))
        if orphans:
            latest = self.frames.latest()
            if answers:
                answers[0].failures.extend(orphans)
            else:
                # No frame of theirs to attach them to: an answer on the latest frame (if any) carries the errors.
                answers.append(Answer(frame=latest, failures=orphans))
        return answers

    def answer_on_frame(self, frame: Frame, requests: Sequence[PromptRequest]) -> Answer:
        answer = Answer(frame=frame)
        valid: list[PromptRequest] = []
        for request in requests:
            try:
                request.spec.validate(frame.height, frame.width)
                valid.append(request)
            except PromptError as error:
                answer.failures.append(PromptFailure(request.prompt_id, str(error)))
        if not valid:
            return answer
        try:
            self._encode(frame, answer)
        except Exception as error:  # noqa: BLE001 - any model failure becomes an explicit answer
            answer.failures.extend(PromptFailure(r.prompt_id, f"image encoding failed: {error}") for r in valid)
            return answer
        predictions = self._predict_resilient(frame, [r.spec for r in valid], answer)
        for request, prediction in zip(valid, predictions):
            if isinstance(prediction, PromptFailure):
                answer.failures.append(prediction)
            elif prediction.box is None:
                answer.failures.append(
                    PromptFailure(request.prompt_id, "empty mask: the model found no object at this prompt"))
            else:
                track_id = 0
                if request.track:
                    try:
                        track_id = self.tracker.start(request.prompt_id, prediction.mask, frame.stamp_ns,
                                                      prediction.box, frame_classes(prediction))
                    except (RuntimeError, EmptyMaskError) as error:
                        # One answer per prompt id: a prompt that asked to be tracked and cannot be is a
                        # failure with the reason, not also an untracked instance.
                        answer.failures.append(PromptFailure(request.prompt_id, f"not tracked: {error}"))
                        continue
                answer.instances.append(InstanceResult(prediction, track_id))
        return answer

    # -- per-frame work: tracks and text queries -------------------------------------------------
    def step(self, frame: Frame, text_queries: Sequence[str] = ()) -> Answer | None:
        """Tracks and the standing text query on a new frame; None when neither is active."""
        tracked = self.tracker.prompts(frame.stamp_ns, frame.height, frame.width)
        if not tracked and not text_queries:
            return None
        answer = Answer(frame=frame)
        try:
            self._encode(frame, answer)
        except Exception as error:  # noqa: BLE001
            answer.failures.extend(PromptFailure(track.prompt_id, f"image encoding failed: {error}")
                                   for track in tracked)
            return answer
        if tracked:
            results = iter(self._predict_resilient(frame, [spec for track in tracked for spec in track.candidates],
                                                   answer))
            for track in tracked:
                candidates = [next(results) for _ in track.candidates]
                predictions = [c for c in candidates if not isinstance(c, PromptFailure)]
                if not predictions:
                    answer.failures.append(candidates[0])  # one answer per prompt id
                    continue
                prediction = best_candidate(predictions)
                mask = prediction.mask if prediction.box is not None else None
                alive = self.tracker.update(track.track_id, mask, prediction.mask_score, frame.stamp_ns, prediction.box,
                                            frame_classes(prediction))
                if prediction.box is not None and alive:
                    answer.instances.append(InstanceResult(self.tracker.named(track.track_id, prediction),
                                                           track.track_id))
                elif not alive:
                    answer.failures.append(PromptFailure(track.prompt_id, f"track {track.track_id} lost"))
        if text_queries:
            answer.instances.extend(InstanceResult(p) for p in self.find(frame, text_queries, answer))
        return answer

    def find(self, frame: Frame, queries: Sequence[str], answer: Answer | None = None) -> list[InstancePrediction]:
        started = time.perf_counter()
        settings = self.settings
        found = self.predictor.find(list(queries), key=frame.key, top_k=settings.top_k,
                                    max_instances=settings.max_instances,
                                    points_per_side=settings.everything_points_per_side,
                                    score_threshold=settings.score_threshold)
        if answer is not None:
            answer.timings_ms["text_query"] = (time.perf_counter() - started) * 1e3
        # Text-query instances answer no prompt: their prompt_id is empty (InstanceMask's contract).
        return [dataclasses.replace(p, prompt_id="") for p in found]

    def segment_image(self, frame: Frame, requests: Sequence[PromptRequest], text_queries: Sequence[str]) -> Answer:
        """The synchronous service: prompts and text queries on one frame."""
        answer = self.answer_on_frame(frame, requests)
        if text_queries:
            self._encode(frame, answer)
            answer.instances.extend(InstanceResult(p) for p in self.find(frame, text_queries, answer))
        return answer

    def set_vocabulary(self, spec: str | list[str] | None) -> int:
        """Switch the vocabulary (None: the model's own); on any error the old one stays and the error
        propagates. Returns the new number of classes."""
        if spec is None:
            spec = str(self.predictor.default_vocabulary)
        return int(self.predictor.set_vocabulary(spec).size)

    def encode_frames(self, frames: Sequence[Frame]) -> list[Frame]:
        """Encode the frames whose features are not cached as one batch: several cameras' frames, since
        their engines share this predictor. Returns the frames encoded (none when fewer than two were
        missing: nothing gained, left to the job that needs the frame)."""
        unique = list({frame.key: frame for frame in frames}.values())
        missing = [frame for frame in unique if not self.predictor.has_image(frame.key)]
        if len(missing) < 2:
            return []
        self.predictor.set_images([frame.rgb for frame in missing], [frame.key for frame in missing],
                                  cache_groups=[frame.cache_group for frame in missing])
        return missing

    # -- helpers ---------------------------------------------------------------------------------
    def _encode(self, frame: Frame, answer: Answer) -> None:
        started = time.perf_counter()
        if not self.predictor.has_image(frame.key):
            self.predictor.set_image(frame.rgb, key=frame.key, cache_group=frame.cache_group)
            answer.timings_ms["encode"] = (time.perf_counter() - started) * 1e3

    def _predict_resilient(self, frame: Frame, specs: list[PromptSpec], answer: Answer) -> list[Any]:
        """One batched pass; if it fails (e.g. out of memory), each prompt alone, so one bad prompt or
        a batch too large for the device costs only what it must."""
        started = time.perf_counter()
        top_k = self.settings.top_k
        try:
            results: list[Any] = list(self.predictor.predict(specs, key=frame.key, top_k=top_k))
        except Exception:  # noqa: BLE001
            results = []
            for spec in specs:
                try:
                    results.extend(self.predictor.predict([spec], key=frame.key, top_k=top_k))
                except Exception as error:  # noqa: BLE001
                    results.append(PromptFailure(spec.prompt_id, f"inference failed: {type(error).__name__}: {error}"))
        answer.timings_ms["decode"] = (time.perf_counter() - started) * 1e3
        return results

