"""The evaluation commands on weights whose vocabulary lacks a shapes class: exit 1 with a message
that names the missing class, before any scene is scored."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ovsam_model.build import shipped_weights_dir
from ovsam_model.config import get_config
from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.vocabulary import load_vocabulary_file, save_vocabulary

CONFIG = get_config("ovsam-shapes")
DROPPED = CLASS_NAMES[5]


@pytest.fixture(scope="module")
def weights_without_a_class(tmp_path_factory) -> Path:
    """The shipped files, their vocabulary less one class (the network files untouched, so their
    digests still match)."""
    folder = tmp_path_factory.mktemp("weights")
    for path in shipped_weights_dir(CONFIG.name).iterdir():
        shutil.copy2(path, folder / path.name)
    vocabulary_file = folder / CONFIG.weight_files["vocabulary"]
    vocabulary = load_vocabulary_file(vocabulary_file)
    save_vocabulary(vocabulary.subset([name for name in vocabulary.names if name != DROPPED]), vocabulary_file)
    return folder


def test_eval_names_the_missing_class(weights_without_a_class: Path, capsys) -> None:
    from ovsam_model.cli import main

    code = main(["eval", "--weights", str(weights_without_a_class), "--scenes", "2", "--threads", "1",
                 "--no-baseline"])
    err = capsys.readouterr().err
    assert code == 1
    assert repr(DROPPED) in err and "lacks a shapes class" in err


def test_error_breakdown_names_the_missing_class(weights_without_a_class: Path, capsys) -> None:
    from ovsam_model.evaluation.error_breakdown import main

    code = main(["--weights", str(weights_without_a_class), "--scenes", "2", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert repr(DROPPED) in captured.err and "lacks a shapes class" in captured.err
    assert "base" not in captured.out  # no table: nothing was scored
