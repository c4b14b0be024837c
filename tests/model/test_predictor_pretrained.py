"""OVSAMPredictor.from_pretrained: weights from disk, default vocabularies, clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ovsam_model.build import WeightsNotFoundError, resolve_device
from ovsam_model.checkpoint import save_official_layout
from ovsam_model.modeling.ovsam import OVSAM, build_model
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.vocabulary import Vocabulary, encode_class_names, save_vocabulary

NAMES = ["red square", "blue circle", "green star"]


@pytest.fixture(scope="module")
def source_model() -> OVSAM:
    torch.manual_seed(7)
    return build_model("ovsam-tiny")


@pytest.fixture(scope="module")
def weights_dir(source_model: OVSAM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    save_official_layout(source_model, directory)
    return directory


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "cache"))


def image() -> np.ndarray:
    picture = np.full((64, 80, 3), 20, dtype=np.uint8)
    picture[10:40, 20:60] = (200, 30, 30)
    return picture


def test_loaded_predictor_matches_the_saved_model(source_model: OVSAM, weights_dir: Path) -> None:
    loaded = OVSAMPredictor.from_pretrained("ovsam-tiny", weights_dir, device="cpu", vocabulary=NAMES)
    with torch.no_grad():
        vocabulary = Vocabulary(NAMES, encode_class_names(source_model.encode_text, NAMES, progress=False))
    reference = OVSAMPredictor(source_model, vocabulary)
    prompts = [PromptSpec("b", box=[20, 10, 60, 40]), PromptSpec("p", points=[[30, 20]])]
    for predictor in (loaded, reference):
        predictor.set_image(image())
    for a, b in zip(loaded.predict(prompts), reference.predict(prompts)):
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.label == b.label and a.score == pytest.approx(b.score, abs=1e-6)
    assert loaded.vocabulary.names == NAMES
    torch.testing.assert_close(loaded.vocabulary.embeddings, vocabulary.embeddings)


def test_default_vocabulary_is_the_file_next_to_the_weights(source_model: OVSAM, weights_dir: Path,
                                                            tmp_path: Path) -> None:
    directory = tmp_path / "with-vocabulary"
    directory.mkdir()
    for file in weights_dir.iterdir():
        (directory / file.name).symlink_to(file)
    with torch.no_grad():
        shipped = Vocabulary(["purple cross", "white hexagon"],
                             encode_class_names(source_model.encode_text, ["purple cross", "white hexagon"],
                                                progress=False), source="shipped")
    save_vocabulary(shipped, directory / "vocabulary.pt")
    predictor = OVSAMPredictor.from_pretrained("ovsam-tiny", directory, device="auto")
    assert predictor.device == resolve_device("auto")
    assert predictor.vocabulary.names == ["purple cross", "white hexagon"]
    predictor.set_image(image())
    (result,) = predictor.predict([PromptSpec("b", box=[20, 10, 60, 40])])
    assert result.label in ("purple cross", "white hexagon", "")


def test_missing_weights_name_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="ovsam-model download ovsam-tiny"):
        OVSAMPredictor.from_pretrained("ovsam-tiny")  # nothing is shipped for the test model
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        OVSAMPredictor.from_pretrained("ovsam-tiny", tmp_path / "absent")


def test_unknown_model_and_device_errors(weights_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown model configuration"):
        OVSAMPredictor.from_pretrained("no-such-model", weights_dir)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
