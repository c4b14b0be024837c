"""Stage (e), recognition on cached CLIP features: what it caches, what it trains, what it leaves alone."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ovsam_model.config import get_config
from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.modeling.clip_backbone import trunk_features
from ovsam_model.modeling.ovsam import build_model
from ovsam_model.modeling.region_pooling import box_levels
from ovsam_model.synthetic import generate_scene_set
from ovsam_model.synthetic.classes import BASE_CLASSES, BASE_INDICES
from ovsam_model.training.clip2sam import class_text_embeddings
from ovsam_model.training.common import StageRun
from ovsam_model.training.data import dihedral, normalise
from ovsam_model.training.recognition import (
    RecognitionStageSettings,
    cache_regions,
    jittered_boxes,
    load_trained_state,
    recognition_loss,
    recognition_modules,
    train_recognition,
    trained_state,
)

CONFIG = get_config("ovsam-shapes")


@pytest.fixture(scope="module")
def scenes():
    return generate_scene_set(5, seed=(98, 1), classes=BASE_INDICES)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(CONFIG).eval()


def test_cached_features_and_boxes_are_those_of_each_flipped_or_turned_scene(model, scenes) -> None:
    regions = cache_regions(model, scenes, variants=3, first_level=3, batch=2)
    count = len(scenes)
    assert [tuple(level.shape) for level in regions.levels] == [(3 * count, 512, 8, 8)]
    assert regions.levels[0].dtype == torch.float16
    scale = CONFIG.image_size / scenes.images.shape[1]
    for variant in (0, 2):
        scene_index = 3
        image = dihedral(scenes.images[scene_index], variant)
        with torch.no_grad():
            expected = trunk_features(model.clip.visual, normalise(image[None], CONFIG))[3][0]
        cached = regions.levels[0][variant * count + scene_index].float()
        assert torch.allclose(cached, expected, atol=2e-2 * expected.abs().max().item())
        labels = scenes.labels[scene_index][scenes.labels[scene_index] >= 0]
        turned = dihedral(scenes.instance_maps[scene_index], variant)
        boxes = masks_to_boxes(np.stack([turned == k + 1 for k in range(len(labels))])) * scale
        mine = regions.image == variant * count + scene_index
        assert np.allclose(regions.boxes[mine].numpy(), boxes)
        assert regions.labels[mine].tolist() == labels.tolist()
    # The turned scene's boxes are not the scene's own (the variants are new data).
    first = regions.boxes[regions.image == 3]
    turned_boxes = regions.boxes[regions.image == 2 * count + 3]
    assert not torch.allclose(first, turned_boxes)
    assert set(regions.labels.tolist()) <= set(BASE_INDICES)
    assert regions.left_out == 0  # every object of these scenes is 32 px or more: the top level


def test_boxes_below_the_cached_levels_are_left_out_and_counted(model, scenes) -> None:
    regions = cache_regions(model, scenes, variants=1, first_level=3)
    # With the released model's level rule scaled to 256 px, objects under 80 px map to finer levels.
    torch.manual_seed(0)
    finer_rule = build_model(dataclasses.replace(CONFIG, roi_finest_scale=40.0)).eval()
    fewer = cache_regions(finer_rule, scenes, variants=1, first_level=3)
    assert fewer.left_out > 0 and len(fewer.labels) + fewer.left_out == len(regions.labels)
    with pytest.raises(ValueError, match="variants"):
        cache_regions(model, scenes, variants=9, first_level=3)
    with pytest.raises(ValueError, match="first_level"):
        cache_regions(model, scenes, variants=1, first_level=4)


def test_training_boxes_are_jittered_within_the_limit_and_never_below_the_cached_level(model) -> None:
    boxes = torch.tensor([[10.0, 20.0, 90.0, 100.0], [0.0, 0.0, 33.0, 33.0]]).repeat(100, 1)
    moved = jittered_boxes(model, boxes, 3, np.random.default_rng(0), amount=0.1, limit=16.0)
    assert (moved - boxes).abs().max() <= 16.0 + 1e-4
    assert len({tuple(box.tolist()) for box in moved[::2]}) == 100  # every big box moved its own way
    assert torch.all(box_levels(moved, CONFIG.roi_finest_scale, 4) == 3)
    assert torch.all(box_levels(boxes, CONFIG.roi_finest_scale, 4) == 3)
    # The 33 px box is just above the level boundary (32 px): a jitter that shrinks it below is undone,
    # one that keeps it above stays.
    unchanged = (moved[1::2] == boxes[1::2]).all(dim=1)
    assert 0 < int(unchanged.sum()) < 100


def test_a_recognition_step_lowers_the_loss_and_touches_only_the_head_it_trains(scenes) -> None:
    torch.manual_seed(0)
    model = build_model(CONFIG).eval()
    regions = cache_regions(model, scenes, variants=2, first_level=3)
    text = class_text_embeddings(model, list(BASE_CLASSES))
    trained = [p for module in recognition_modules(model, 3) for p in module.parameters()]
    before_all = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(trained, lr=1e-2)
    index = torch.arange(len(regions.labels))
    losses = []
    for _ in range(2):
        loss = recognition_loss(model, regions, text, index, np.random.default_rng(0), 0.0, 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before_all[k])}
    assert changed == {"fpn_neck.lateral_convs.3.conv.weight", "fpn_neck.lateral_convs.3.conv.bias",
                       "fpn_neck.fpn_convs.3.conv.weight", "fpn_neck.fpn_convs.3.conv.bias",
                       "mask_decoder.roi_conv.0.conv.weight"}


def test_the_stage_starts_the_head_afresh_and_logs_what_it_trained_on(scenes, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(CONFIG).eval()
    decoder = {k: v.clone() for k, v in model.mask_decoder.mask_decoder.state_dict().items()}
    finer = model.fpn_neck.lateral_convs[2].conv.weight.clone()
    log = train_recognition(model, scenes, StageRun(tmp_path / "recognition"), seed=4,
                            settings=RecognitionStageSettings(steps=3, boxes_per_step=8, variants=2))
    assert log["steps"] == 3 and log["cached_images"] == 2 * len(scenes)
    assert log["wall_time_s"] == pytest.approx(log["feature_caching_s"] + log["training_loop_s"])
    assert log["boxes"] + log["boxes_left_out"] == 2 * int((scenes.labels >= 0).sum())
    assert all(torch.equal(v, model.mask_decoder.mask_decoder.state_dict()[k]) for k, v in decoder.items())
    assert torch.equal(model.fpn_neck.lateral_convs[2].conv.weight, finer)
    final = StageRun(tmp_path / "recognition").load_final()
    assert set(final) >= {"fpn_neck", "roi_conv"}
    # The same seed gives the same head: its fresh start comes from the seeded generator.
    torch.manual_seed(0)
    again = build_model(CONFIG).eval()
    train_recognition(again, scenes, StageRun(tmp_path / "again"), seed=4,
                      settings=RecognitionStageSettings(steps=3, boxes_per_step=8, variants=2))
    assert torch.equal(again.mask_decoder.roi_conv[0].conv.weight, model.mask_decoder.roi_conv[0].conv.weight)


def test_the_stage_needs_only_the_clip_stage(tmp_path) -> None:
    # It can run beside SAM2CLIP and CLIP2SAM: with only the CLIP stage done, it trains.
    from ovsam_model.training.pipeline import PipelineSettings, run_pipeline

    logs = run_pipeline(CONFIG, tmp_path, seed=1, stages=("clip", "recognition"), settings=PipelineSettings.quick())
    assert {"clip", "recognition"} <= set(logs) and logs["recognition"]["steps"] == 3
    assert not any((tmp_path / stage).exists() for stage in ("teacher", "distill", "clip2sam"))
    assert StageRun(tmp_path / "recognition").is_done()


def test_its_result_replaces_only_what_it_trained(scenes) -> None:
    torch.manual_seed(0)
    trained = build_model(CONFIG).eval()
    torch.manual_seed(1)
    other = build_model(CONFIG).eval()
    finer_before = other.fpn_neck.lateral_convs[2].conv.weight.clone()
    load_trained_state(other, trained_state(trained, first_level=3))
    assert torch.equal(other.fpn_neck.lateral_convs[3].conv.weight, trained.fpn_neck.lateral_convs[3].conv.weight)
    assert torch.equal(other.fpn_neck.fpn_convs[3].conv.weight, trained.fpn_neck.fpn_convs[3].conv.weight)
    assert torch.equal(other.mask_decoder.roi_conv[0].conv.weight, trained.mask_decoder.roi_conv[0].conv.weight)
    assert torch.equal(other.fpn_neck.lateral_convs[2].conv.weight, finer_before)
    wrong = trained_state(trained, first_level=3)
    wrong["first_level"] = 2  # says it trained level 2 too, but holds only level 3
    with pytest.raises(ValueError, match="another configuration"):
        load_trained_state(other, wrong)
