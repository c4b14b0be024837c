"""The shipped default model `ovsam-shapes`: its files load through the released-weights loader,
and its figures on a small held-out set of the synthetic world stay at (a little under) what was
measured, with OV-SAM naming base objects better than both crop baselines."""
from __future__ import annotations

import pytest
import torch

from ovsam_model.build import shipped_weights_dir
from ovsam_model.checkpoint import load_weights, read_state_dict
from ovsam_model.config import get_config
from ovsam_model.evaluation import HELD_OUT_SEED, evaluate, held_out_scenes, load_teacher_file
from ovsam_model.modeling.ovsam import build_model
from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.vocabulary import load_vocabulary_file
from ovsam_model.weight_files import ROLE_LAYOUTS

CONFIG = get_config("ovsam-shapes")
WEIGHTS = shipped_weights_dir("ovsam-shapes")
SMALL_SET = 60  # scenes: 197 instances (101 novel), ~20 s on one core

# Measured on this 60-scene set (HELD_OUT_SEED + 1) with the shipped weights (one 43 min 48 s
# invocation of the recipe, CLIP and SAM2CLIP's adapter in bf16, 2026-12-04): box mIoU 0.886 (the
# teacher's 0.880), point mIoU 0.870, OV-SAM accuracy base 0.854 / novel 0.752; image crop 0.510 /
# 0.515, feature crop 0.458 / 0.525 (the model card's 640-scene set: 0.811 / 0.773, 0.480 / 0.550,
# 0.468 / 0.552; box mIoU 0.878, teacher 0.871). The figures are deterministic for these weights; the
# margins below are for a retrain of the recipe. Retrains measured base 0.896, 0.844, 0.854, 0.865,
# 0.833 and 0.854 here while within 0.01 on the 640-scene set (0.819, 0.817, 0.818, 0.810, 0.813 and
# 0.811): with 96 base instances one binomial standard error is about 0.04, so this set cannot tell
# such weights apart, nor from the weights without the recognition stage (0.833 here; the 74-object
# check in test_predictor_shipped.py separates those). Margins: about 1.2-1.5 standard errors (novel
# accuracy moved by up to 0.06 with the recognition seed, seeds in the model card).
MIN_BOX_MIOU = 0.84     # measured 0.886, margin 0.046
MIN_POINT_MIOU = 0.82   # measured 0.870, margin 0.050
MIN_ACC_BASE = 0.80     # measured 0.854, margin 0.054 (0.033 with the weights before)
MIN_ACC_NOVEL = 0.60    # measured 0.752, margin 0.152


@pytest.fixture(scope="module")
def model():
    network = build_model(CONFIG)
    load_weights(network, WEIGHTS, strict=True)
    return network


def test_shipped_files_are_the_released_layout_and_small() -> None:
    total = 0
    for layout in ROLE_LAYOUTS:
        path = WEIGHTS / CONFIG.weight_files[layout.role]
        state = read_state_dict(path)
        prefixes = {key.split(".", 1)[0] for key in state}
        if layout.role == "clip":
            assert {"visual", "transformer", "token_embedding"} <= prefixes
        elif layout.role == "prompt_encoder":  # the whole teacher SAM, like SAM's own checkpoint
            assert prefixes == {"image_encoder", "prompt_encoder", "mask_decoder"}
        else:
            assert prefixes == {prefix for prefix, _ in layout.targets}
        total += path.stat().st_size
    total += (WEIGHTS / CONFIG.weight_files["vocabulary"]).stat().st_size
    assert total < 20e6


def test_shipped_files_load_strictly_into_the_library_model(model) -> None:
    report = load_weights(build_model(CONFIG), WEIGHTS, strict=True)
    assert report.complete
    # Every value comes from the files; roi_conv twice, as in the released files (the FPN file's overrides).
    roi_conv = sum(v.numel() for v in model.mask_decoder.roi_conv.state_dict().values())
    assert report.parameters_loaded == sum(v.numel() for v in model.state_dict().values()) + roi_conv


def test_vocabulary_names_the_42_classes_with_this_text_encoder(model) -> None:
    vocabulary = load_vocabulary_file(WEIGHTS / CONFIG.weight_files["vocabulary"])
    assert sorted(vocabulary.names) == sorted(CLASS_NAMES)
    recomputed = torch.nn.functional.normalize(model.encode_text([f"a photo of a {CLASS_NAMES[0]}."]), dim=-1)
    row = vocabulary.embeddings[vocabulary.index(CLASS_NAMES[0]), 0]
    assert float(recomputed[0] @ row) > 0.5  # the vocabulary was made by this text tower


@pytest.fixture(scope="module")
def figures(model):
    vocabulary = load_vocabulary_file(WEIGHTS / CONFIG.weight_files["vocabulary"])
    text = vocabulary.subset(CLASS_NAMES).embeddings
    teacher = load_teacher_file(CONFIG, WEIGHTS / CONFIG.weight_files["prompt_encoder"])
    # A held-out seed of its own (not the model card's 640 scenes), also never used in training.
    return evaluate(model, text, held_out_scenes(SMALL_SET, seed=HELD_OUT_SEED + 1), teacher=teacher, progress=False)


def test_box_and_point_prompted_masks(figures) -> None:
    assert figures["n_instances"] > 150 and figures["n_novel"] > 10
    assert figures["box_miou"] >= MIN_BOX_MIOU
    assert figures["point_miou"] >= MIN_POINT_MIOU
    assert figures["box_miou_novel"] >= MIN_BOX_MIOU - 0.05  # segmentation is class-agnostic


def test_recognition_of_base_and_novel_classes(figures) -> None:
    assert figures["acc_base"] >= MIN_ACC_BASE
    assert figures["acc_novel"] >= MIN_ACC_NOVEL


def test_ovsam_names_objects_better_than_both_crop_baselines(figures) -> None:
    """The paper's central result (measured gaps here: base 0.34 and 0.40, novel 0.24 and 0.23; the
    640-scene comparison with intervals is in the model card). The student's masks are level with
    its teacher's: 0.878 vs 0.871 on the large set, 0.886 vs 0.880 on this one."""
    baselines = figures["baselines"]
    assert figures["acc_base"] > baselines["image_crop"]["acc_base"] + 0.15
    assert figures["acc_base"] > baselines["feature_crop"]["acc_base"] + 0.15
    assert figures["acc_novel"] > baselines["image_crop"]["acc_novel"] + 0.1
    assert figures["acc_novel"] > baselines["feature_crop"]["acc_novel"] + 0.05
    assert figures["box_miou"] >= baselines["image_crop"]["box_miou"] - 0.01  # the teacher's masks


def test_eval_command_prints_the_table_and_writes_the_issues_json_keys(tmp_path, capsys) -> None:
    from ovsam_model.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "ovsam-shapes", "--scenes", "4", "--threads", "1", "--json", str(out)]) == 0
    import json

    result = json.loads(out.read_text())
    for key in ("box_miou", "point_miou", "acc_base", "acc_novel", "point_acc_base", "point_acc_novel"):
        assert 0.0 <= result[key] <= 1.0 or result[key] != result[key]  # NaN when a split is empty
    for baseline in ("image_crop", "feature_crop"):
        for key in ("acc_base", "acc_novel", "box_miou"):
            assert (0.0 <= result["baselines"][baseline][key] <= 1.0
                    or result["baselines"][baseline][key] != result["baselines"][baseline][key])
    assert result["n_instances"] >= 4 and result["n_novel"] >= 1
    assert {"head_only", "clip_branch", "intervals"} <= set(result)
    out = capsys.readouterr().out
    assert "teacher SAM + CLIP image crop" in out and "teacher SAM + CLIP feature crop" in out
