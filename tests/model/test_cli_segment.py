"""`ovsam-model segment` end to end on the tiny configuration with weights written to disk."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ovsam_model.checkpoint import save_official_layout
from ovsam_model.cli import main
from ovsam_model.commands.segment import CommandError, mask_to_rle, parse_point, rle_to_mask
from ovsam_model.modeling.ovsam import build_model

HEIGHT, WIDTH = 60, 90


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-weights")
    save_official_layout(build_model("ovsam-tiny"), directory)
    return directory


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    image = np.full((HEIGHT, WIDTH, 3), 30, dtype=np.uint8)
    image[10:40, 20:60] = (40, 40, 220)  # BGR on disk: a red square once read as RGB
    cv2.imwrite(str(tmp_path / "scene.png"), image)
    (tmp_path / "classes.txt").write_text("# shapes\nred square\nblue circle\n")
    return tmp_path


def run_segment(weights_dir: Path, *extra: str) -> int:
    return main(["segment", "scene.png", "--model", "ovsam-tiny", "--weights", str(weights_dir),
                 "--vocab", "classes.txt", "--device", "cpu", *extra])


def test_segment_writes_overlay_and_json(weights_dir: Path, workspace: Path, capsys) -> None:
    code = run_segment(weights_dir, "--point", "30,20", "--point", "70,50,1", "--box", "20,10,60,40",
                       "--top-k", "2", "--out", "overlay.png", "--json", "result.json")
    assert code == 0
    overlay = cv2.imread(str(workspace / "overlay.png"))
    assert overlay is not None and overlay.shape == (HEIGHT, WIDTH, 3)
    document = json.loads((workspace / "result.json").read_text())
    assert (document["height"], document["width"]) == (HEIGHT, WIDTH)
    assert document["vocabulary"]["size"] == 2
    instances = document["instances"]
    assert [i["prompt_id"] for i in instances] == ["point-1", "point-2", "box-1"]
    for instance in instances:
        mask = rle_to_mask(instance["mask_rle"])
        assert mask.shape == (HEIGHT, WIDTH) and int(mask.sum()) == instance["area"]
        assert instance["label"] in ("red square", "blue circle", "")
        assert len(instance["top_labels"]) <= 2
    printed = capsys.readouterr().out
    assert "point-1" in printed and "box-1" in printed and "overlay.png" in printed


def test_grouped_points_form_one_prompt(weights_dir: Path, workspace: Path) -> None:
    code = run_segment(weights_dir, "--point", "30,20", "--point", "80,55,0", "--box", "20,10,60,40",
                       "--group-points", "--json", "grouped.json")
    assert code == 0
    instances = json.loads((workspace / "grouped.json").read_text())["instances"]
    assert [i["prompt_id"] for i in instances] == ["prompt-1"]
    assert (workspace / "scene_ovsam.png").is_file()  # the default overlay name


def test_text_query_and_everything_modes_run(weights_dir: Path, workspace: Path) -> None:
    assert run_segment(weights_dir, "--text", "red square, green star", "--points-per-side", "3",
                       "--json", "text.json") == 0
    found = json.loads((workspace / "text.json").read_text())["instances"]
    assert all(i["label"] in ("red square", "green star") for i in found)
    assert run_segment(weights_dir, "--points-per-side", "3", "--out", "everything.png") == 0
    assert (workspace / "everything.png").is_file()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--point", "12;30"], "--point '12;30' must be 2 or 3 comma-separated numbers"),
        (["--point", "12,30,5"], "LABEL must be 1"),
        (["--box", "1,2,3"], "must be 4 comma-separated numbers"),
        (["--box", "50,10,20,40"], "x1 > x0"),
        (["--point", "500,20"], "outside"),
        (["--point", "1,1", "--point", "2,2", "--box", "0,0,9,9", "--box", "1,1,8,8", "--group-points"],
         "at most one --box"),
    ],
)
def test_bad_prompts_exit_2_with_a_message(weights_dir: Path, workspace: Path, capsys, arguments, message) -> None:
    assert run_segment(weights_dir, *arguments) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_missing_image_exits_2(weights_dir: Path, workspace: Path, capsys) -> None:
    code = main(["segment", "nowhere.png", "--model", "ovsam-tiny", "--weights", str(weights_dir)])
    assert code == 2
    assert "'nowhere.png' does not exist" in capsys.readouterr().err


def test_unreadable_image_and_missing_weights_exit_2(weights_dir: Path, workspace: Path, capsys) -> None:
    (workspace / "notes.png").write_text("not a picture")
    assert main(["segment", "notes.png", "--model", "ovsam-tiny", "--weights", str(weights_dir)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["segment", "scene.png", "--model", "ovsam-tiny", "--weights", str(workspace / "none")]) == 2
    assert "ovsam-model download" in capsys.readouterr().err


def test_mask_rle_round_trip() -> None:
    rng = np.random.default_rng(0)
    for mask in (rng.random((7, 5)) > 0.5, np.ones((3, 4), bool), np.zeros((3, 4), bool)):
        rle = mask_to_rle(mask)
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        assert sum(rle["counts"]) == mask.size
    assert mask_to_rle(np.array([[True, False]]))["counts"] == [0, 1, 1]


def test_mask_rle_runs_down_the_columns_as_coco_reads_it() -> None:
    # COCO's uncompressed RLE (pycocotools' frPyObjects) counts in column-major order: this mask's
    # left column is one run of 2 foreground pixels, its right column one run of 2 background ones.
    # Counted along the rows it would read [0, 1, 1, 1, 1], a mask transposed for COCO's tools.
    mask = np.array([[True, False], [True, False]])
    assert mask_to_rle(mask) == {"size": [2, 2], "counts": [0, 2, 2]}
    wide = np.zeros((2, 3), bool)
    wide[1, 2] = True  # the last pixel of the last column
    assert mask_to_rle(wide) == {"size": [2, 3], "counts": [5, 1]}


def test_parse_point() -> None:
    assert parse_point(" 3.5, 4 ") == (3.5, 4.0, 1)
    assert parse_point("3,4,0") == (3.0, 4.0, 0)
    with pytest.raises(CommandError):
        parse_point("3,nan")
