"""The node's ROS-free logic on a real (tiny, random-weight) predictor: every prompt is answered once,
with a result or an explicit reason, whatever goes wrong."""
from __future__ import annotations

import numpy as np
import pytest

from ovsam_model import build_model
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic.motion import MovingWorld
from ovsam_ros.engine import EngineSettings, PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.prompt_conversion import PromptRequest
from tests.node.fake_predictor import FakePredictor

CLASSES = ["red star", "blue cross", "green circle"]


@pytest.fixture(scope="module")
def predictor():
    import torch

    torch.manual_seed(0)
    predictor = OVSAMPredictor(build_model("ovsam-tiny"), None, cache_size=2)
    predictor.set_vocabulary(CLASSES)
    return predictor


@pytest.fixture
def engine(predictor):
    predictor.clear_cache()
    engine = PerceptionEngine(predictor, EngineSettings(frame_buffer_size=3))
    rng = np.random.default_rng(1)
    for stamp in (1_000, 2_000, 3_000):
        engine.frames.add(Frame(stamp_ns=stamp, rgb=rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)))
    return engine


def box_request(prompt_id: str, box, stamp_ns: int = 0, track: bool = False) -> PromptRequest:
    return PromptRequest(PromptSpec(prompt_id=prompt_id, box=np.asarray(box, float)), stamp_ns=stamp_ns, track=track)


def point_request(prompt_id: str, x: float, y: float, stamp_ns: int = 0) -> PromptRequest:
    return PromptRequest(PromptSpec(prompt_id=prompt_id, points=[[x, y]], point_labels=[1]), stamp_ns=stamp_ns)


def answered_ids(answers) -> list[str]:
    ids = [r.prediction.prompt_id for a in answers for r in a.instances]
    return sorted(ids + [f.prompt_id for a in answers for f in a.failures])


def test_every_prompt_answered_once_with_reasons(engine):
    requests = [
        box_request("good-box", [10, 10, 50, 40]),
        point_request("good-point", 30, 20, stamp_ns=2_000),
        point_request("outside", 500, 20),
        point_request("nan", float("nan"), 3),
        box_request("inverted", [50, 10, 10, 40]),
        point_request("expired", 5, 5, stamp_ns=999),
    ]
    answers = engine.answer(requests)
    assert answered_ids(answers) == sorted(r.prompt_id for r in requests)
    reasons = {f.prompt_id: f.reason for a in answers for f in a.failures}
    assert "no buffered frame with stamp" in reasons["expired"]
    # Each bad prompt is refused by validation, with its own reason; the good ones get masks.
    assert "lies outside the 80x60 image" in reasons["outside"]
    assert "NaN or infinite" in reasons["nan"]
    assert "need x1 > x0" in reasons["inverted"]
    assert set(reasons) == {"outside", "nan", "inverted", "expired"}
    frames = {a.frame.stamp_ns for a in answers if a.frame is not None}
    assert 2_000 in frames and 3_000 in frames  # stamped prompt on its own frame, zero stamp on the latest
    for answer in answers:
        for result in answer.instances:
            assert result.prediction.mask.shape == (60, 80)


def test_second_prompt_on_a_frame_reuses_its_features(engine, predictor, monkeypatch):
    calls = []
    original = predictor.set_image
    monkeypatch.setattr(predictor, "set_image", lambda *a, **k: calls.append(1) or original(*a, **k))
    engine.answer([box_request("a", [5, 5, 40, 30])])
    engine.answer([box_request("b", [10, 10, 60, 50]), point_request("c", 20, 20)])
    assert len(calls) == 1


def test_batch_failure_falls_back_to_one_by_one(engine, predictor, monkeypatch):
    original = predictor.predict

    def fails_on_batches(prompts, *args, **kwargs):
        if len(prompts) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        if prompts[0].prompt_id == "poison":
            raise RuntimeError("simulated fault")
        return original(prompts, *args, **kwargs)

    monkeypatch.setattr(predictor, "predict", fails_on_batches)
    answers = engine.answer([box_request("a", [5, 5, 40, 30]), box_request("poison", [1, 1, 20, 20]),
                             point_request("b", 10, 10)])
    assert answered_ids(answers) == ["a", "b", "poison"]
    reasons = {f.prompt_id: f.reason for a in answers for f in a.failures}
    assert "simulated fault" in reasons["poison"]
    assert set(reasons) == {"poison"}, "the others, retried one by one, are answered with masks"


def test_encoder_failure_fails_the_frame_prompts_and_recovers(engine, predictor, monkeypatch):
    original = predictor.set_image
    monkeypatch.setattr(predictor, "set_image", lambda *a, **k: (_ for _ in ()).throw(MemoryError("simulated OOM")))
    answers = engine.answer([box_request("x", [5, 5, 40, 30])])
    assert [f.reason for f in answers[0].failures] == ["image encoding failed: simulated OOM"]
    monkeypatch.setattr(predictor, "set_image", original)
    answers = engine.answer([box_request("y", [5, 5, 40, 30])])
    assert answered_ids(answers) == ["y"]


def test_no_frame_yet(predictor):
    engine = PerceptionEngine(predictor)
    answers = engine.answer([point_request("early", 1, 1)])
    assert answers[0].frame is None and answers[0].failures[0].reason == "no image has been received yet"


@pytest.fixture(scope="module")
def shipped_predictor():
    """The shipped ovsam-shapes model: on the synthetic world a box around an object always gives its mask,
    so tests that need a mask do not depend on what random weights happen to output."""
    return OVSAMPredictor.from_pretrained("ovsam-shapes", device="cpu", cache_size=2)


def test_tracked_prompt_gets_a_stable_id_on_later_frames(shipped_predictor):
    world = MovingWorld(seed=11, size=128, num_objects=3, speed=1.0)
    engine = PerceptionEngine(shipped_predictor, EngineSettings(frame_buffer_size=3))
    first = world.render(0)
    index = int(np.argmax([(first.instance_map == i + 1).sum() for i in range(len(first.labels))]))
    ys, xs = np.nonzero(first.instance_map == index + 1)
    engine.add_frame(Frame(stamp_ns=1_000, rgb=first.image))
    answers = engine.answer([box_request("obj", [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], track=True)])
    assert [f.reason for a in answers for f in a.failures] == []
    (started,) = [r for a in answers for r in a.instances]
    assert started.track_id > 0 and len(engine.tracker) == 1
    for frame_index in (1, 2, 3):
        scene = world.render(frame_index)
        frame = Frame(stamp_ns=1_000 + frame_index, rgb=scene.image)
        engine.add_frame(frame)
        step = engine.step(frame)
        assert step is not None and step.failures == []
        (followed,) = step.instances
        assert followed.track_id == started.track_id and followed.prediction.prompt_id == "obj"
        truth = scene.instance_map == index + 1
        overlap = (followed.prediction.mask & truth).sum() / (followed.prediction.mask | truth).sum()
        assert overlap >= 0.5, f"frame {frame_index}: the tracked mask left the object (IoU {overlap:.2f})"


def test_a_prompt_past_the_track_limit_gets_one_answer_a_failure():
    """33 tracked prompts with room for 32 tracks: each id answered exactly once; the 33rd fails with the
    reason instead of also being published as an untracked instance."""
    engine = PerceptionEngine(FakePredictor(), EngineSettings())
    engine.add_frame(Frame(stamp_ns=1, rgb=np.zeros((64, 64, 3), np.uint8)))
    limit = engine.tracker.max_tracks
    requests = [box_request(f"t{i}", [2, 2, 30 + i % 20, 30], track=True) for i in range(limit + 1)]
    answers = engine.answer(requests)
    assert answered_ids(answers) == sorted(r.prompt_id for r in requests)  # one answer per id
    failures = [f for a in answers for f in a.failures]
    assert [f.prompt_id for f in failures] == [f"t{limit}"]
    assert failures[0].reason.startswith("not tracked: already tracking 32 objects")
    assert sorted(r.track_id for a in answers for r in a.instances) == list(range(1, limit + 1))


def test_text_query_keeps_instances_at_or_above_the_score_threshold_then_caps(shipped_predictor):
    """The node's score_threshold and max_instances on a standing text query: the threshold drops the
    low-scoring instances, and the cap counts only those that pass it."""
    world = MovingWorld(seed=3, size=256, num_objects=4, speed=1.0)
    scene = world.render(0)
    frame = Frame(stamp_ns=1, rgb=scene.image)
    every_class = list(shipped_predictor.vocabulary.names)
    engine = PerceptionEngine(shipped_predictor)
    engine.add_frame(frame)
    everything = engine.step(frame, every_class)
    assert everything is not None and everything.failures == []
    scores = [result.prediction.score for result in everything.instances]
    assert len(set(scores)) >= 3, f"the scene must give instances of distinct scores, got {scores}"
    assert scores == sorted(scores, reverse=True)
    threshold = sorted(set(scores))[1]   # drops exactly the lowest-scoring instance(s)
    expected = [result.prediction.mask for result in everything.instances
                if result.prediction.score >= threshold]

    engine.set_limits(top_k=5, score_threshold=threshold, max_instances=50)
    kept = engine.step(frame, every_class)
    assert kept is not None and [r.prediction.score for r in kept.instances] == [s for s in scores if s >= threshold]
    assert all(np.array_equal(r.prediction.mask, mask) for r, mask in zip(kept.instances, expected))

    engine.set_limits(top_k=5, score_threshold=threshold, max_instances=len(expected) - 1)
    capped = engine.step(frame, every_class)
    assert capped is not None and len(capped.instances) == len(expected) - 1
    assert all(r.prediction.prompt_id == "" and r.track_id == 0 for r in capped.instances)

    engine.set_limits(top_k=5, score_threshold=1.0, max_instances=50)
    above_all = engine.step(frame, every_class)
    assert above_all is not None and all(r.prediction.score >= 1.0 for r in above_all.instances)
    assert len(above_all.instances) < len(scores)
