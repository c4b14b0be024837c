"""`ovsam_model.evaluation` checked against the synthetic world's truth: hand-built masks with known
IoU, bootstrap intervals of known data, the held-out set's base/novel balance, and a real run of
every method (shipped weights) whose accuracy is known exactly from the scenes' labels."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ovsam_model.build import shipped_weights_dir
from ovsam_model.checkpoint import load_weights
from ovsam_model.config import get_config
from ovsam_model.evaluation import (
    HELD_OUT_SEED,
    bootstrap_interval,
    evaluate,
    held_out_scenes,
    load_teacher_file,
    mask_iou,
    ovsam_masks_at,
    sam_masks_at,
)
from ovsam_model.evaluation.baselines import clip_last_stage, feature_crop_classes, image_crop_classes
from ovsam_model.modeling.ovsam import build_model
from ovsam_model.synthetic.classes import BASE_INDICES, CLASS_NAMES, NOVEL_INDICES
from ovsam_model.vocabulary import load_vocabulary_file

CONFIG = get_config("ovsam-shapes")
WEIGHTS = shipped_weights_dir("ovsam-shapes")


def test_mask_iou_of_hand_built_masks() -> None:
    target = np.zeros((3, 8, 8), bool)
    target[:, 2:6, 2:6] = True  # 16 pixels
    predicted = np.zeros_like(target)
    predicted[0] = target[0]  # exact
    predicted[1, 2:6, 2:4] = True  # half: 8 / 16
    predicted[2, 0:2, 0:2] = True  # disjoint
    assert mask_iou(predicted, target) == pytest.approx([1.0, 0.5, 0.0])


def test_masks_follow_each_models_official_threshold() -> None:
    """OV-SAM's masks are sigmoid(logit) > 0.5 (background for tiny positive logits, whose float32
    sigmoid is exactly 0.5); the teacher SAM's are SAM's logit > 0. A frame of 300x400 is shrunk and
    cropped as the predictor does."""
    model = build_model(CONFIG)
    low = torch.full((1, 1, 64, 64), -4.0)
    low[..., 8:24, 8:24] = 3.0    # clearly foreground
    low[..., 36:52, 36:52] = 4e-8  # positive, but sigmoid rounds to 0.5 in float32
    size = (300, 400)
    logits = model.postprocess_masks(low, size)[:, 0]
    official = (torch.sigmoid(logits) > 0.5).numpy()
    tiny = (logits > 0).numpy() & ~official
    assert tiny.sum() > 1000 and official.sum() > 1000  # both regions survive the resize
    np.testing.assert_array_equal(ovsam_masks_at(model, low, size), official)
    np.testing.assert_array_equal(sam_masks_at(model, low, size), official | tiny)
    assert ovsam_masks_at(model, low, size).shape == (1, 300, 400)


def test_bootstrap_interval_brackets_the_mean_and_collapses_for_constant_values() -> None:
    rng = np.random.default_rng(1)
    scene_of = np.repeat(np.arange(200), 3)
    values = (rng.random(600) < 0.7).astype(float)
    which = np.ones(600, bool)
    low, high = bootstrap_interval(values, which, scene_of)
    assert low < values.mean() < high
    # Binomial standard error of 600 draws at 0.7 is 0.019: the 95 % interval is about +-0.037.
    assert 0.05 < high - low < 0.1
    assert bootstrap_interval(np.ones(600), which, scene_of) == [1.0, 1.0]
    assert all(np.isnan(bootstrap_interval(values, np.zeros(600, bool), scene_of)))


def test_held_out_set_draws_base_and_novel_objects_equally_often() -> None:
    scenes = held_out_scenes(120, seed=HELD_OUT_SEED + 7)
    labels = scenes.labels[scenes.labels >= 0]
    novel_share = np.isin(labels, NOVEL_INDICES).mean()
    # ~420 objects at p = 0.5: the share lies within +-0.08 with overwhelming probability.
    assert 0.42 < novel_share < 0.58
    assert set(np.unique(labels)) == set(range(len(CLASS_NAMES)))


def test_default_held_out_set_holds_over_a_thousand_novel_instances() -> None:
    labels = held_out_scenes().labels  # ~6 s to draw
    assert np.isin(labels[labels >= 0], NOVEL_INDICES).sum() >= 1000


@pytest.fixture(scope="module")
def shipped():
    model = build_model(CONFIG)
    load_weights(model, WEIGHTS, strict=True)
    teacher = load_teacher_file(CONFIG, WEIGHTS / CONFIG.weight_files["prompt_encoder"])
    return model, teacher


def test_every_method_scores_the_share_of_class_zero_when_all_classes_look_the_same(shipped) -> None:
    """With one embedding for every class, every method's top-1 is class 0 (ties go to the first):
    each accuracy must equal the share of class-0 objects among the scenes' base objects, and 0 for
    novel ones (class 0, red circle, is a base class) - for box and point prompts, all four methods."""
    model, teacher = shipped
    scenes = held_out_scenes(6, seed=HELD_OUT_SEED + 3)
    same = torch.nn.functional.normalize(torch.ones(len(CLASS_NAMES), 1, CONFIG.text_dim), dim=-1)
    result = evaluate(model, same, scenes, teacher=teacher, progress=False)

    labels = scenes.labels[scenes.labels >= 0]
    base = ~np.isin(labels, NOVEL_INDICES)
    assert 0 in BASE_INDICES
    expected_base = float((labels[base] == 0).mean())
    assert result["n_instances"] == len(labels) and result["n_novel"] == int((~base).sum())
    for figures in (result, result["head_only"], result["clip_branch"], *result["baselines"].values()):
        for key in ("acc_base", "point_acc_base"):
            assert figures[key] == pytest.approx(expected_base)
        for key in ("acc_novel", "point_acc_novel"):
            assert figures[key] == 0.0
        low, high = figures["intervals"]["acc_base"]
        assert low <= figures["acc_base"] <= high
    # Both baselines use the same teacher masks: their mask figures agree exactly.
    image_crop, feature_crop = result["baselines"]["image_crop"], result["baselines"]["feature_crop"]
    assert image_crop["box_miou"] == feature_crop["box_miou"] and image_crop["point_miou"] == feature_crop["point_miou"]


def test_true_vocabulary_names_the_objects_and_the_figures_are_means_over_instances(shipped) -> None:
    model, teacher = shipped
    vocabulary = load_vocabulary_file(WEIGHTS / CONFIG.weight_files["vocabulary"])
    text = vocabulary.subset(CLASS_NAMES).embeddings
    scenes = held_out_scenes(6, seed=HELD_OUT_SEED + 3)
    result = evaluate(model, text, scenes, teacher=teacher, progress=False)
    n_base, n_novel = result["n_instances"] - result["n_novel"], result["n_novel"]
    for figures in (result["head_only"], *result["baselines"].values()):
        # Each accuracy is a count of correct instances over the split's size.
        assert figures["acc_base"] * n_base == pytest.approx(round(figures["acc_base"] * n_base))
        assert figures["acc_novel"] * n_novel == pytest.approx(round(figures["acc_novel"] * n_novel))
    # The real vocabulary names far more than chance (1/42) on these scenes (measured with the shipped
    # weights: OV-SAM 0.56, image crop 0.33 of the base objects).
    assert result["head_only"]["acc_base"] > 0.3 and result["baselines"]["image_crop"]["acc_base"] > 0.15


def test_baselines_on_an_empty_teacher_mask_see_no_more_of_the_object_than_ovsam_does(shipped) -> None:
    """A teacher whose every mask is empty (its last upscaling layer zeroed: logits exactly 0, not
    above SAM's threshold) gives the baselines no box. They then pool the all-zero box, as OV-SAM
    pools its own empty mask, not the object's true box: each scene's objects all get the one class
    of the zero box, and the masks' IoU is 0."""
    model, shipped_teacher = shipped
    teacher = copy.deepcopy(shipped_teacher)
    last_layer = teacher.mask_decoder.output_upscaling[3]
    torch.nn.init.zeros_(last_layer.weight)
    torch.nn.init.zeros_(last_layer.bias)
    text = load_vocabulary_file(WEIGHTS / CONFIG.weight_files["vocabulary"]).subset(CLASS_NAMES).embeddings
    scenes = held_out_scenes(6, seed=HELD_OUT_SEED + 3)
    result = evaluate(model, text, scenes, teacher=teacher, progress=False)

    right_image, right_feature, base = [], [], []
    for i in range(len(scenes)):
        scene = scenes.scene(i)
        zero_boxes = np.zeros((len(scene.labels), 4), np.float32)
        pixels, _ = model.preprocess(scene.image)
        image_class = image_crop_classes(model, scene.image, zero_boxes, text)
        feature_class = feature_crop_classes(model, clip_last_stage(model, pixels), torch.from_numpy(zero_boxes), text)
        assert len(set(image_class)) == 1 and len(set(feature_class)) == 1  # one answer for the whole scene
        right_image += list(image_class == scene.labels)
        right_feature += list(feature_class == scene.labels)
        base += list(~np.isin(scene.labels, NOVEL_INDICES))
    base_mask = np.asarray(base)
    for name, right in (("image_crop", right_image), ("feature_crop", right_feature)):
        figures = result["baselines"][name]
        assert figures["box_miou"] == 0.0 and figures["point_miou"] == 0.0
        for key in ("acc_base", "point_acc_base"):
            assert figures[key] == pytest.approx(np.mean(np.asarray(right)[base_mask]))
        for key in ("acc_novel", "point_acc_novel"):
            assert figures[key] == pytest.approx(np.mean(np.asarray(right)[~base_mask]))
    # With true boxes the image crop names far more of these objects (0.33 of the base ones, above).
    assert result["baselines"]["image_crop"]["acc_base"] < 0.2
