import os

import pytest

from ovsam_ros.vocabulary_request import (
    VocabularyRequestError,
    model_vocabulary_spec,
    parameter_vocabulary_spec,
    resolve_vocabulary_request,
)


def test_lists_and_builtins_pass(tmp_path):
    assert resolve_vocabulary_request("ignored", ["mug"], "") == ["mug"]
    assert resolve_vocabulary_request(" lvis ", [], "") == "lvis"


def test_files_only_inside_allowed_directories(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "kitchen.txt").write_text("mug\n")
    (tmp_path / "secret.txt").write_text("x\n")
    (allowed / "link.txt").symlink_to(tmp_path / "secret.txt")
    dirs = os.pathsep.join([str(allowed), str(tmp_path / "other")])
    assert resolve_vocabulary_request("kitchen.txt", [], dirs) == str(allowed / "kitchen.txt")
    assert resolve_vocabulary_request(str(allowed / "kitchen.txt"), [], dirs) == str(allowed / "kitchen.txt")
    for name in (str(tmp_path / "secret.txt"), str(allowed / "link.txt"), "/etc/passwd", "../../../../etc/passwd"):
        with pytest.raises(VocabularyRequestError, match="outside the allowed"):
            resolve_vocabulary_request(name, [], dirs)
    with pytest.raises(VocabularyRequestError, match="vocabulary_dirs parameter, which is empty"):
        resolve_vocabulary_request("kitchen.txt", [], "")
    with pytest.raises(VocabularyRequestError, match="not a valid path"):
        resolve_vocabulary_request("a\x00b", [], dirs)
    with pytest.raises(VocabularyRequestError, match="give a vocabulary"):
        resolve_vocabulary_request("  ", [], dirs)


def test_every_path_gives_the_model_the_same_spec() -> None:
    # The start-up parameter, a parameter change and SetVocabulary all go through this.
    assert model_vocabulary_spec("") is None
    assert model_vocabulary_spec("  default ") is None
    assert model_vocabulary_spec(" lvis ") == "lvis"
    assert model_vocabulary_spec("/data/kitchen.txt") == "/data/kitchen.txt"
    assert model_vocabulary_spec(["mug", "bowl"]) == ["mug", "bowl"]


def test_the_vocabulary_parameter_reads_the_same_at_start_up_and_at_run_time(tmp_path, monkeypatch) -> None:
    """Blanks and "default" are the model's own vocabulary and a file name is looked up in
    vocabulary_dirs, both times; only the operator's start-up value may name a file elsewhere."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "kitchen.txt").write_text("mug\n")
    monkeypatch.chdir(tmp_path)  # the working directory holds neither file
    for at_start_up in (True, False):
        assert parameter_vocabulary_spec("   ", str(allowed), at_start_up=at_start_up) is None
        assert parameter_vocabulary_spec(" default", str(allowed), at_start_up=at_start_up) is None
        assert parameter_vocabulary_spec(" coco ", "", at_start_up=at_start_up) == "coco"
        assert parameter_vocabulary_spec("kitchen.txt", str(allowed), at_start_up=at_start_up) == str(
            allowed / "kitchen.txt")
    assert parameter_vocabulary_spec("/data/office.txt", str(allowed), at_start_up=True) == "/data/office.txt"
    with pytest.raises(VocabularyRequestError, match="outside the allowed"):
        parameter_vocabulary_spec("/data/office.txt", str(allowed), at_start_up=False)
