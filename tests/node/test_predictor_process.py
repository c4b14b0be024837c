"""The predictor in a child process: the same answers as in this process, errors that keep their type
and text, and a child that dies or hangs costs the call in progress, not the node."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from ovsam_model.build import WeightsNotFoundError
from ovsam_model.feature_cache import ImageNotSetError
from ovsam_model.prompts import PromptError, PromptSpec
from ovsam_ros.engine import PerceptionEngine
from ovsam_ros.frame_buffer import Frame
from ovsam_ros.predictor_process import PredictorProcess, PredictorProcessError
from ovsam_ros.prompt_conversion import PromptRequest

# The node's inference process is a child process: out of the fast loop with the other process tests.
pytestmark = pytest.mark.ros
CLASSES = ["red star", "blue cross", "green circle"]


class _SlowPredictor:
    def __init__(self, predictor, delay_s: float) -> None:
        self._predictor, self._delay_s = predictor, delay_s

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def predict(self, *args, **kwargs):
        time.sleep(self._delay_s)
        return self._predictor.predict(*args, **kwargs)


def tiny_predictor(settings: dict):
    """Module-level, so that the child process can import it."""
    import torch

    from ovsam_model import build_model
    from ovsam_model.predictor import OVSAMPredictor

    torch.set_num_threads(1)
    torch.manual_seed(0)
    predictor = OVSAMPredictor(build_model("ovsam-tiny"), None)
    predictor.set_vocabulary(CLASSES)
    delay_s = settings.get("predict_delay_s", 0.0)
    return _SlowPredictor(predictor, delay_s) if delay_s else predictor


def missing_weights(settings: dict):
    from ovsam_model.predictor import OVSAMPredictor

    return OVSAMPredictor.from_pretrained("ovsam-tiny", settings["weights_dir"])


def image(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (60, 80, 3), dtype=np.uint8)


PROMPTS = [PromptSpec(prompt_id="box", box=np.array([10.0, 10.0, 50.0, 40.0])),
           PromptSpec(prompt_id="point", points=[[30.0, 20.0]], point_labels=[1])]


@pytest.fixture(scope="module")
def remote():
    predictor = PredictorProcess(tiny_predictor, {}, call_timeout_s=60)
    yield predictor
    predictor.close()


def test_answers_match_the_predictor_in_this_process(remote):
    local = tiny_predictor({})
    local.set_image(image(), key="frame-1")
    remote.set_image(image(), key="frame-1")
    assert remote.has_image("frame-1") and not remote.has_image("frame-2")
    expected, got = local.predict(PROMPTS, key="frame-1", top_k=3), remote.predict(PROMPTS, key="frame-1", top_k=3)
    assert [p.prompt_id for p in got] == ["box", "point"]
    for mine, theirs in zip(expected, got):
        assert theirs.mask.dtype == bool and theirs.mask.shape == (60, 80)
        assert np.array_equal(mine.mask, theirs.mask)
        assert (theirs.label, theirs.box, theirs.top_labels) == (mine.label, mine.box, mine.top_labels)
        assert theirs.score == pytest.approx(mine.score, abs=1e-6)
    assert remote.vocabulary.size == len(CLASSES) and remote.device == "cpu"
    assert tuple(remote.vocabulary.names) == tuple(CLASSES)  # the names cross the pipe (for `labels`)
    assert remote.pid != os.getpid()


def test_several_cameras_frames_are_encoded_in_the_child_with_their_cache_groups(remote):
    keys = remote.set_images([image(7), image(8)], [("camera:front", 7), ("camera:rear", 7)],
                             cache_groups=["camera:front", "camera:rear"])
    assert keys == [("camera:front", 7), ("camera:rear", 7)]
    assert remote.has_image(("camera:front", 7)) and remote.has_image(("camera:rear", 7))
    local = tiny_predictor({})
    local.set_image(image(8), key="rear")
    expected, got = local.predict(PROMPTS, key="rear"), remote.predict(PROMPTS, key=("camera:rear", 7))
    assert [p.label for p in got] == [p.label for p in expected]
    assert all((a.mask != b.mask).mean() < 0.01 for a, b in zip(got, expected))


def test_errors_keep_their_type_and_text_and_the_child_carries_on(remote):
    remote.set_image(image(), key="frame-1")
    with pytest.raises(PromptError, match="outside"):
        remote.predict([PromptSpec(prompt_id="far", points=[[500.0, 5.0]], point_labels=[1])], key="frame-1")
    with pytest.raises(ImageNotSetError, match="never-set"):
        remote.predict(PROMPTS, key="never-set")
    with pytest.raises(AttributeError):
        remote._call("clear_cache")
    assert len(remote.predict(PROMPTS, key="frame-1")) == 2


def test_the_engine_runs_on_it(remote):
    """The engine gives the same answers on the child process as on the predictor in this process
    (the engine turns a predictor that cannot serve into failures, so ids alone would not tell)."""
    def answers_with(predictor):
        engine = PerceptionEngine(predictor)
        engine.frames.add(Frame(stamp_ns=5, rgb=image(3)))
        answers = engine.answer([PromptRequest(spec, stamp_ns=5) for spec in PROMPTS])
        instances = {i.prediction.prompt_id: i.prediction for a in answers for i in a.instances}
        return instances, {f.prompt_id: f.reason for a in answers for f in a.failures}

    instances, failures = answers_with(remote)
    local_instances, local_failures = answers_with(tiny_predictor({}))
    assert set(instances) | set(failures) == {"box", "point"}
    assert failures == local_failures and set(instances) == set(local_instances)
    assert instances, "these seeded weights give at least one mask on this frame"
    for prompt_id, prediction in instances.items():
        assert (prediction.mask != local_instances[prompt_id].mask).mean() < 0.01
        assert prediction.label == local_instances[prompt_id].label


@pytest.mark.slow
def test_a_killed_child_fails_the_call_in_progress_and_comes_back_with_the_vocabulary():
    remote = PredictorProcess(tiny_predictor, {"predict_delay_s": 3.0}, call_timeout_s=60)
    try:
        assert remote.set_vocabulary(["mug", "bottle"]).size == 2
        remote.set_image(image(), key="frame-1")
        failure: list[BaseException] = []

        def predict() -> None:
            try:
                remote.predict(PROMPTS, key="frame-1")
            except BaseException as error:  # noqa: BLE001
                failure.append(error)

        caller = threading.Thread(target=predict)
        caller.start()
        time.sleep(1.0)
        first_pid = remote.pid
        os.kill(first_pid, signal.SIGKILL)  # what the kernel's OOM killer does
        caller.join(30)
        assert failure and isinstance(failure[0], PredictorProcessError), failure
        assert "exited" in str(failure[0]) and "restarts" in str(failure[0])
        # The next call starts a new child: empty feature cache, the vocabulary the user chose.
        assert not remote.has_image("frame-1")
        assert remote.pid != first_pid and remote.restarts == 1
        assert remote.vocabulary.size == 2
        remote.set_image(image(), key="frame-1")
        assert {p.label for p in remote.predict(PROMPTS, key="frame-1")} <= {"mug", "bottle", ""}
    finally:
        remote.close()


@pytest.mark.slow
def test_a_hung_child_is_stopped_after_the_call_timeout():
    remote = PredictorProcess(tiny_predictor, {"predict_delay_s": 30.0}, call_timeout_s=2)
    try:
        remote.set_image(image(), key="frame-1")
        started = time.monotonic()
        with pytest.raises(PredictorProcessError, match="did not answer 'predict' within 2 s"):
            remote.predict(PROMPTS, key="frame-1")
        assert time.monotonic() - started < 10
        assert remote.has_image("frame-1") is False and remote.restarts == 1
    finally:
        remote.close()


def test_a_failing_model_load_raises_its_own_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "nowhere")):
        PredictorProcess(missing_weights, {"weights_dir": str(tmp_path / "nowhere")})


def main_module_factory(settings):
    return None


main_module_factory.__module__ = "__main__"  # as if defined in the script that started the node


@pytest.mark.parametrize("factory", [lambda settings: None, main_module_factory])
def test_a_factory_that_cannot_reach_the_child_is_refused_with_the_way_out(factory):
    with pytest.raises(PredictorProcessError, match="inference_process to false"):
        PredictorProcess(factory, {})
