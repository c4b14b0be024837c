"""Training of ovsam-shapes: one optimiser step of each stage lowers that stage's loss on its batch,
and the pipeline runs, resumes and ships files the strict loader accepts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ovsam_model.checkpoint import load_weights
from ovsam_model.config import get_config
from ovsam_model.modeling.clip_backbone import build_clip, build_tokenizer
from ovsam_model.modeling.ovsam import OVSAM, build_model
from ovsam_model.synthetic import generate_scene_set
from ovsam_model.synthetic.classes import BASE_CLASSES, BASE_INDICES, CLASS_NAMES, NOVEL_CLASSES
from ovsam_model.synthetic.crops import object_crops
from ovsam_model.synthetic.scene_captions import scene_caption, scene_crop
from ovsam_model.training.clip2sam import (
    class_text_embeddings,
    clip2sam_loss,
    freeze_for_clip2sam,
    init_from_teacher,
    trainable_parameters,
)
from ovsam_model.training.clip_stage import clip_loss, crop_size, scene_clip_loss
from ovsam_model.training.data import DIHEDRAL_VARIANTS, augment, dihedral
from ovsam_model.training.distill import distill_loss, init_adapter_from_teacher
from ovsam_model.training.pipeline import PipelineSettings, run_pipeline
from ovsam_model.training.teacher import TeacherSAM, teacher_embeddings, teacher_loss
from ovsam_model.vocabulary import load_vocabulary_file

CONFIG = get_config("ovsam-shapes")


@pytest.fixture(scope="module")
def scenes():
    return generate_scene_set(6, seed=(99, 1), classes=BASE_INDICES)


def test_the_eight_dihedral_variants_are_the_squares_symmetries_and_augment_draws_from_them() -> None:
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    variants = [dihedral(image, v) for v in range(DIHEDRAL_VARIANTS)]
    assert np.array_equal(variants[0], image)
    assert np.array_equal(variants[1], np.rot90(image))
    assert np.array_equal(variants[4], image[:, ::-1])
    assert len({v.tobytes() for v in variants}) == 8
    with pytest.raises(ValueError, match="0..7"):
        dihedral(image, 8)
    images = np.stack([image] * 16)
    augmented, maps = augment(images, images[..., 0], np.random.default_rng(0))
    drawn = {next(v for v in range(8) if np.array_equal(a, variants[v])) for a in augmented}
    assert len(drawn) > 3
    assert all(np.array_equal(m, a[..., 0]) for a, m in zip(augmented, maps))


def lowered_by_one_step(loss_fn, parameters, lr: float = 1e-3) -> tuple[float, float]:
    """The loss on a fixed batch before and after one AdamW step (the batch's randomness replayed)."""
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    torch.manual_seed(0)
    before = loss_fn(np.random.default_rng(0))
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    torch.manual_seed(0)
    with torch.no_grad():
        after = loss_fn(np.random.default_rng(0))
    return float(before.detach()), float(after)


def test_clip_step_lowers_the_contrastive_loss(scenes) -> None:
    torch.manual_seed(0)
    clip = build_clip(CONFIG.clip).train()
    tokenizer = build_tokenizer(CONFIG.clip)
    crops = object_crops(scenes, crop_size(CONFIG), seed=0, variants=2)
    before, after = lowered_by_one_step(
        lambda rng: clip_loss(clip, tokenizer, CONFIG, crops.images[:32], crops.labels[:32], rng), clip.parameters())
    assert after < before


def test_scene_level_clip_step_lowers_the_contrastive_loss(scenes) -> None:
    torch.manual_seed(0)
    clip = build_clip(CONFIG.clip).train()
    tokenizer = build_tokenizer(CONFIG.clip)
    index = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    before, after = lowered_by_one_step(
        lambda rng: scene_clip_loss(clip, tokenizer, CONFIG, scenes, index, rng, (0.25, 1.0)), clip.parameters())
    assert after < before


def test_scene_crops_and_captions_name_only_the_base_objects_they_show(scenes) -> None:
    tokenizer = build_tokenizer(CONFIG.clip)
    rng = np.random.default_rng(0)
    for i in range(len(scenes)):
        labels = scenes.labels[i][scenes.labels[i] >= 0]
        whole, shown_whole = scene_crop(scenes.images[i], scenes.instance_maps[i], labels, rng, 64, (1.0, 1.0))
        # The whole scene (area share 1) shows every object it holds.
        assert whole.shape == (64, 64, 3) and set(shown_whole.tolist()) == set(labels.tolist())
        _, shown = scene_crop(scenes.images[i], scenes.instance_maps[i], labels, rng, 64, (0.1, 0.3))
        assert set(shown.tolist()) <= set(labels.tolist())
        text, named = scene_caption(shown_whole, rng, lambda t: len(tokenizer.encode(t)), 14)
        assert len(tokenizer.encode(text)) <= 14 and set(named) <= set(labels.tolist()) and named
        assert all(CLASS_NAMES[c] in text for c in named)
        assert not any(novel in text for novel in NOVEL_CLASSES)
    # A crop of empty background shows nothing: the caption of a drawn crop always names something,
    # because crops that show no object are redrawn (and the whole scene taken at last).
    empty_map = np.zeros((32, 32), np.uint8)
    crop, shown = scene_crop(np.zeros((32, 32, 3), np.uint8), empty_map, np.zeros(0, np.int64), rng, 16, (0.5, 1.0))
    assert crop.shape == (16, 16, 3) and len(shown) == 0


def _first_convolution_dtypes(module: torch.nn.Module) -> list[torch.dtype]:
    """The dtypes the module's first convolution outputs, recorded as it runs."""
    seen: list[torch.dtype] = []
    conv = next(m for m in module.modules() if isinstance(m, (torch.nn.Conv2d)))
    conv.register_forward_hook(lambda _m, _i, output: seen.append(output.dtype))
    return seen


def test_bf16_runs_the_clip_towers_in_bfloat16_and_keeps_the_loss_and_gradients_float32(scenes) -> None:
    torch.manual_seed(0)
    clip = build_clip(CONFIG.clip).train()
    tokenizer = build_tokenizer(CONFIG.clip)
    index = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    seen = _first_convolution_dtypes(clip)
    fp32 = scene_clip_loss(clip, tokenizer, CONFIG, scenes, index, np.random.default_rng(0), (0.25, 1.0), "fp32")
    bf16 = scene_clip_loss(clip, tokenizer, CONFIG, scenes, index, np.random.default_rng(0), (0.25, 1.0), "bf16")
    assert seen == [torch.float32, torch.bfloat16]
    assert bf16.dtype == torch.float32
    assert bf16.item() != fp32.item() and bf16.item() == pytest.approx(fp32.item(), rel=0.02)
    bf16.backward()
    assert all(p.grad.dtype == torch.float32 for p in clip.parameters() if p.grad is not None)


def test_bf16_runs_the_teacher_in_bfloat16_and_keeps_the_mask_losses_float32(scenes, fixed_mask_loss_points) -> None:
    torch.manual_seed(0)
    teacher = TeacherSAM(CONFIG).train()
    index = np.array([0, 1])
    seen = _first_convolution_dtypes(teacher)
    fp32 = teacher_loss(teacher, CONFIG, scenes, index, np.random.default_rng(0), 4, "fp32")
    bf16 = teacher_loss(teacher, CONFIG, scenes, index, np.random.default_rng(0), 4, "bf16")
    assert seen == [torch.float32, torch.bfloat16]
    for full, half in zip(fp32, bf16):
        assert half.dtype == torch.float32
        assert half.item() != full.item() and half.item() == pytest.approx(full.item(), rel=0.03, abs=1e-3)


def test_bf16_runs_the_adapter_in_bfloat16_on_float32_clip_features_and_keeps_the_mse_float32(
        scenes, tmp_path) -> None:
    torch.manual_seed(0)
    model, teacher = build_model(CONFIG), TeacherSAM(CONFIG).eval()
    targets = torch.from_numpy(teacher_embeddings(teacher, scenes, 4, CONFIG, tmp_path / "t.npy")).float()
    clip_seen = _first_convolution_dtypes(model.clip.visual)
    adapter_seen = _first_convolution_dtypes(model.neck_student)
    model.neck_student.train()
    fp32 = distill_loss(model, scenes.images[:4], targets, "fp32")
    bf16 = distill_loss(model, scenes.images[:4], targets, "bf16")
    # The frozen CLIP's features, the adapter's input, are float32 as at inference.
    assert clip_seen == [torch.float32, torch.float32] and adapter_seen == [torch.float32, torch.bfloat16]
    assert bf16.dtype == torch.float32
    assert bf16.item() != fp32.item() and bf16.item() == pytest.approx(fp32.item(), rel=0.03)
    bf16.backward()
    grads = [p.grad for p in model.neck_student.parameters() if p.grad is not None]
    assert grads and all(grad.dtype == torch.float32 for grad in grads)
    assert all(p.grad is None for p in model.clip.parameters())


def test_an_unknown_training_precision_is_refused_before_training(scenes, tmp_path) -> None:
    from ovsam_model.training.common import StageRun
    from ovsam_model.training.precision import forward_precision
    from ovsam_model.training.teacher import TeacherStageSettings, train_teacher

    with pytest.raises(ValueError, match="fp32, bf16"):
        forward_precision("fp16")
    with pytest.raises(ValueError, match="'half'"):
        train_teacher(CONFIG, scenes, StageRun(tmp_path / "teacher"), 0, TeacherStageSettings(precision="half"))
    assert not (tmp_path / "teacher" / "checkpoint.pt").exists()


@pytest.fixture
def fixed_mask_loss_points(monkeypatch) -> None:
    """The mask losses' random points replaced by a fixed grid, so that two ways of computing a loss
    see the same points."""
    from ovsam_model.training import losses

    grid = torch.stack(torch.meshgrid(torch.linspace(0.02, 0.98, 16), torch.linspace(0.02, 0.98, 16),
                                      indexing="xy"), dim=-1).reshape(1, -1, 2)
    monkeypatch.setattr(losses, "sample_points", lambda logits, num_points: grid.expand(len(logits), -1, -1))


def test_teacher_step_lowers_the_mask_loss(scenes) -> None:
    torch.manual_seed(0)
    teacher = TeacherSAM(CONFIG).train()
    index = np.array([0, 1])
    before, after = lowered_by_one_step(
        lambda rng: sum(teacher_loss(teacher, CONFIG, scenes, index, rng, prompts_per_image=4)), teacher.parameters())
    assert after < before


def test_teacher_loss_over_all_images_at_once_is_the_mean_of_each_images(scenes, fixed_mask_loss_points) -> None:
    # The teacher decodes all images' prompts of a kind in one call. Reference: each image's prompts
    # decoded on its own embedding (SAM's decoder as released), each image's box and point terms
    # averaged, then the images averaged. Fixed mask-loss points, so both sides see the same points.
    from ovsam_model.training import losses
    from ovsam_model.training.data import normalise, sample_prompts

    torch.manual_seed(0)
    teacher = TeacherSAM(CONFIG).eval()
    index, per_image = np.array([0, 4, 1]), 6
    with torch.no_grad():
        bce, dice = teacher_loss(teacher, CONFIG, scenes, index, np.random.default_rng(2), per_image)
        rng = np.random.default_rng(2)  # the same draws, in the same order, as the loss's
        images, maps = augment(scenes.images[index], scenes.instance_maps[index], rng)
        embeddings = teacher.image_encoder(normalise(images, CONFIG))
        expected_bce, expected_dice = 0.0, 0.0
        for b, scene_index in enumerate(index):
            labels = scenes.labels[scene_index]
            prompts = sample_prompts(maps[b], labels[labels >= 0], rng, CONFIG.image_size, per_image)
            for kind, targets in (("boxes", prompts.box_targets), ("points", prompts.point_targets)):
                logits = teacher.decode(embeddings[b:b + 1], **{kind: getattr(prompts, kind)})
                one_bce, one_dice = losses.mask_losses(logits, targets)
                expected_bce += one_bce.item() / (2 * len(index))
                expected_dice += one_dice.item() / (2 * len(index))
    assert bce.item() == pytest.approx(expected_bce, rel=1e-5)
    assert dice.item() == pytest.approx(expected_dice, rel=1e-5)


def test_distill_step_lowers_the_embedding_mse(scenes, tmp_path) -> None:
    torch.manual_seed(0)
    model, teacher = build_model(CONFIG), TeacherSAM(CONFIG).eval()
    targets = torch.from_numpy(teacher_embeddings(teacher, scenes, 4, CONFIG, tmp_path / "t.npy")).float()
    with torch.no_grad():
        init_adapter_from_teacher(model, teacher)
    assert torch.equal(model.neck_student.pos_embed, teacher.image_encoder.pos_embed)
    model.neck_student.train()
    before, after = lowered_by_one_step(lambda rng: distill_loss(model, scenes.images[:4], targets),
                                        model.neck_student.parameters())
    assert after < before


def clip2sam_ready() -> tuple[OVSAM, TeacherSAM, torch.Tensor]:
    """A seeded model set up for the CLIP2SAM stage (decoder from a teacher, the rest frozen) and the
    base classes' text embeddings."""
    torch.manual_seed(0)
    model, teacher = build_model(CONFIG), TeacherSAM(CONFIG).eval()
    with torch.no_grad():
        init_from_teacher(model, teacher)
    freeze_for_clip2sam(model)
    return model, teacher, class_text_embeddings(model, list(BASE_CLASSES))


def test_clip2sam_step_lowers_the_papers_loss(scenes) -> None:
    model, teacher, text = clip2sam_ready()
    clip_before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    index = np.array([2, 3])
    before, after = lowered_by_one_step(lambda rng: clip2sam_loss(model, text, scenes, index, rng, 6)[0],
                                        trainable_parameters(model), lr=1e-4)
    assert after < before
    # Frozen parts stay frozen: CLIP (weights and BatchNorm statistics), adapter, prompt encoder.
    assert all(torch.equal(v, model.clip.state_dict()[k]) for k, v in clip_before.items())
    assert torch.equal(model.prompt_encoder.point_embeddings[0].weight,
                       teacher.prompt_encoder.point_embeddings[0].weight)


def test_clip2sam_loss_over_all_images_at_once_is_the_sum_of_each_images(scenes, fixed_mask_loss_points) -> None:
    # The stage decodes all images' prompts in one call per kind. Reference: each image's prompts
    # decoded on that image alone, each kind's terms weighted by its share of the step's prompts.
    # The mask losses' random points are replaced by a fixed grid so both sides see the same points.
    # The shipped weights: a random CLIP's features hardly differ between images.
    from ovsam_model.build import shipped_weights_dir
    from ovsam_model.modeling.clip_backbone import trunk_features
    from ovsam_model.modeling.ovsam import ImageFeatures
    from ovsam_model.training import losses
    from ovsam_model.training.clip2sam import BACKGROUND_WEIGHT, BCE_WEIGHT, CE_WEIGHT, DICE_WEIGHT
    from ovsam_model.training.data import normalise, sample_prompts
    model = build_model(CONFIG)
    load_weights(model, shipped_weights_dir(CONFIG.name))
    freeze_for_clip2sam(model)
    text = class_text_embeddings(model, list(BASE_CLASSES))
    index, per_image = np.array([2, 3, 5]), 6
    with torch.no_grad():
        together, terms = clip2sam_loss(model, text, scenes, index, np.random.default_rng(5), per_image)

        rng = np.random.default_rng(5)  # the same draws, in the same order, as the stage's
        images, maps = augment(scenes.images[index], scenes.instance_maps[index], rng)
        levels = trunk_features(model.clip.visual, normalise(images, CONFIG))
        features = ImageFeatures(embedding=model.neck_student(levels), fpn=model.fpn_neck(levels),
                                 clip_last=levels[-1])
        to_base = {c: i for i, c in enumerate(BASE_INDICES)}
        expected = {"ce": 0.0, "bce": 0.0, "dice": 0.0}
        for b, scene_index in enumerate(index):
            labels = scenes.labels[scene_index]
            prompts = sample_prompts(maps[b], labels[labels >= 0], rng, CONFIG.image_size, per_image)
            for kind, targets, classes in (("boxes", prompts.box_targets, prompts.box_labels),
                                           ("points", prompts.point_targets, prompts.point_labels)):
                if getattr(prompts, kind) is None:
                    continue
                output = model.decode(features.select(b), **{kind: getattr(prompts, kind)})
                bce, dice = losses.mask_losses(output.mask_logits, targets)
                ce = losses.classification_loss(model.classify(output.region_embedding, text),
                                                torch.tensor([to_base[int(c)] for c in classes]), BACKGROUND_WEIGHT)
                share = len(classes) / (per_image * len(index))
                for name, value in (("ce", ce), ("bce", bce), ("dice", dice)):
                    expected[name] += share * value.item()
    assert terms == pytest.approx(expected, rel=1e-4)
    weighted = CE_WEIGHT * expected["ce"] + BCE_WEIGHT * expected["bce"] + DICE_WEIGHT * expected["dice"]
    assert together.item() == pytest.approx(weighted, rel=1e-4)


def test_clip2sam_loss_computes_the_fpn_only_from_the_finest_level_its_boxes_use(scenes,
                                                                                 fixed_mask_loss_points) -> None:
    # The finer FPN levels no box is pooled from get no gradient: skipping them leaves the loss and
    # every gradient as with the whole pyramid (reference: the stage's decoder calls on all levels).
    from ovsam_model.build import shipped_weights_dir
    from ovsam_model.modeling.clip_backbone import trunk_features
    from ovsam_model.modeling.ovsam import ImageFeatures
    from ovsam_model.training import losses
    from ovsam_model.training.clip2sam import BACKGROUND_WEIGHT, BCE_WEIGHT, CE_WEIGHT, DICE_WEIGHT
    from ovsam_model.training.data import PROMPT_KINDS, normalise, prompts_of_kind, sample_scene_prompts
    model = build_model(CONFIG)
    load_weights(model, shipped_weights_dir(CONFIG.name))
    freeze_for_clip2sam(model)
    text = class_text_embeddings(model, list(BASE_CLASSES))
    index, per_image = np.array([0, 2, 3, 5]), 8
    params = dict(model.named_parameters())

    def gradients(loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {name: None if p.grad is None else p.grad.clone() for name, p in params.items()}

    computed = []
    hooks = [conv.register_forward_hook(lambda module, args, out, level=level: computed.append(level))
             for level, conv in enumerate(model.fpn_neck.fpn_convs)]
    loss, _ = clip2sam_loss(model, text, scenes, index, np.random.default_rng(3), per_image)
    for hook in hooks:
        hook.remove()
    lazy = gradients(loss)

    rng = np.random.default_rng(3)  # the same draws, in the same order, as the stage's
    images, maps = augment(scenes.images[index], scenes.instance_maps[index], rng)
    pixels = normalise(images, CONFIG)
    with torch.no_grad():
        levels = trunk_features(model.clip.visual, pixels)
        embedding = model.neck_student(levels)
    features = ImageFeatures(embedding=embedding, fpn=model.fpn_neck(levels), clip_last=levels[-1])
    prompts = sample_scene_prompts(scenes, index, maps, rng, CONFIG.image_size, per_image)
    to_base = {c: i for i, c in enumerate(BASE_INDICES)}
    expected, finest = pixels.new_zeros(()), 3
    for kind in PROMPT_KINDS:
        gathered = prompts_of_kind(prompts, kind)
        output = model.decode(features, image_index=gathered.image_index, **{kind: gathered.prompts})
        finest = min(finest, model.finest_level(output.mask_boxes))
        bce, dice = losses.mask_losses(output.mask_logits, gathered.targets)
        ce = losses.classification_loss(model.classify(output.region_embedding, text),
                                        torch.tensor([to_base[int(c)] for c in gathered.labels]), BACKGROUND_WEIGHT)
        share = len(gathered.labels) / (per_image * len(index))
        expected = expected + share * (CE_WEIGHT * ce + BCE_WEIGHT * bce + DICE_WEIGHT * dice)
    whole = gradients(expected)

    assert finest > 0  # these scenes' objects are pooled from the coarser levels only
    assert sorted(computed) == list(range(finest, 4))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert {n for n, g in lazy.items() if g is None} == {n for n, g in whole.items() if g is None}
    assert any(n.startswith(f"fpn_neck.fpn_convs.{finest - 1}.") for n, g in whole.items() if g is None)
    for name, gradient in lazy.items():
        if gradient is not None:
            assert torch.allclose(gradient, whole[name], rtol=1e-4, atol=1e-6), name


def test_clip2sam_crop_distillation_adds_its_term_only_when_weighted(scenes) -> None:
    model, _, text = clip2sam_ready()
    index = np.array([2, 3])
    torch.manual_seed(1)  # the mask losses sample their points from torch's generator
    plain, plain_terms = clip2sam_loss(model, text, scenes, index, np.random.default_rng(5), 6)
    torch.manual_seed(1)
    weighted, terms = clip2sam_loss(model, text, scenes, index, np.random.default_rng(5), 6, crop_distill_weight=2.0)
    assert "distill" not in plain_terms and 0.0 < terms["distill"] <= 2.0  # 1 - cosine
    assert weighted.item() == pytest.approx(plain.item() + 2.0 * terms["distill"], rel=1e-4)
    assert {k: terms[k] for k in plain_terms} == pytest.approx(plain_terms)


def test_quick_pipeline_skips_finished_stages_and_ships_loadable_files(tmp_path) -> None:
    from ovsam_model.training.data import normalise, training_scenes
    from ovsam_model.training.pipeline import assemble_model, stage_run
    from ovsam_model.training.ship import ship
    from ovsam_model.training.teacher import load_teacher

    out = tmp_path / "run"
    logs = run_pipeline(CONFIG, out, seed=3, settings=PipelineSettings.quick())
    assert set(logs) == {"data", "clip", "teacher", "distill", "clip2sam", "recognition"}
    finals = {stage: (out / stage / "final.pt").stat().st_mtime_ns
              for stage in ("clip", "teacher", "distill", "clip2sam", "recognition")}
    run_pipeline(CONFIG, out, seed=3, settings=PipelineSettings.quick())
    assert finals == {stage: (out / stage / "final.pt").stat().st_mtime_ns for stage in finals}
    # The teacher stage computed SAM2CLIP's targets, its embeddings of every training scene.
    from ovsam_model.training.teacher import scene_embeddings_path

    embeddings = np.load(scene_embeddings_path(stage_run(out, "teacher")))
    scenes = training_scenes(out / "data", 3, PipelineSettings.quick().num_scenes)
    assert len(embeddings) == len(scenes) and not (out / "distill" / "teacher_embeddings.npy").exists()
    with torch.no_grad():
        expected = load_teacher(CONFIG, stage_run(out, "teacher")).image_encoder(normalise(scenes.images[5:6], CONFIG))
    assert torch.allclose(torch.from_numpy(embeddings[5]).float(), expected[0], atol=1e-2 * expected.abs().max().item())


    model = assemble_model(CONFIG, out)
    # The recognition stage's FPN and roi_conv replace the joint stage's; its decoder stays.
    recognition, joint = stage_run(out, "recognition").load_final(), stage_run(out, "clip2sam").load_final()
    assert all(torch.equal(v, model.fpn_neck.state_dict()[k]) for k, v in recognition["fpn_neck"].items())
    assert all(torch.equal(v, model.mask_decoder.roi_conv.state_dict()[k]) for k, v in recognition["roi_conv"].items())
    assert not torch.equal(recognition["roi_conv"]["0.conv.weight"], joint["mask_decoder"]["roi_conv.0.conv.weight"])
    # The recognition result holds the FPN levels it trained (the top one); the finer are the joint stage's.
    assert recognition["first_level"] == 3 and {k.split(".")[1] for k in recognition["fpn_neck"]} == {"3"}
    assert torch.equal(model.fpn_neck.lateral_convs[2].conv.weight, joint["fpn_neck"]["lateral_convs.2.conv.weight"])
    assert all(torch.equal(v, model.mask_decoder.mask_decoder.state_dict()[k.removeprefix("mask_decoder.")])
               for k, v in joint["mask_decoder"].items() if k.startswith("mask_decoder."))
    written = ship(model, load_teacher(CONFIG, stage_run(out, "teacher")), tmp_path / "shipped")
    loaded = build_model(CONFIG)
    report = load_weights(loaded, tmp_path / "shipped", strict=True)
    assert report.complete
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    vocabulary = load_vocabulary_file(written["vocabulary"])
    assert len(vocabulary) == 42 and vocabulary.dim == CONFIG.text_dim
    assert json.loads((out / "training_log.json").read_text())["clip"]["steps"] == 4


def test_train_command_runs_the_stages_and_ships(tmp_path, capsys) -> None:
    from ovsam_model.cli import main

    ship_dir = tmp_path / "shipped"
    assert main(["train", "--out", str(tmp_path / "run"), "--quick", "--threads", "1", "--jobs", "2",
                 "--precision", "bf16", "--ship-to", str(ship_dir)]) == 0
    assert all((ship_dir / name).is_file() for name in CONFIG.weight_files.values())
    assert load_weights(build_model(CONFIG), ship_dir, strict=True).complete
    # The teacher trained in its own process (its output in teacher.log), beside the CLIP stage here.
    captured = capsys.readouterr()
    printed = captured.out
    assert "[teacher] training in process" in printed and "[teacher] done already" in printed
    teacher_log = (tmp_path / "run" / "teacher.log").read_text()
    assert "[teacher]" in teacher_log and "[clip]" not in teacher_log
    # Then recognition in its own process (output in recognition.log), beside SAM2CLIP and CLIP2SAM here.
    assert "[recognition] training in process" in printed and "[clip2sam] " in printed
    recognition_log = (tmp_path / "run" / "recognition.log").read_text()
    assert "[recognition]" in recognition_log and "[clip2sam]" not in recognition_log
    logs = json.loads((tmp_path / "run" / "training_log.json").read_text())
    assert set(logs) == {"data", "clip", "teacher", "distill", "clip2sam", "recognition"}
    assert logs["teacher"]["steps"] == 3
    assert logs["clip2sam"]["scenes"] == logs["data"]["scenes"] + 4  # and the quick settings' 4 piled scenes
    # Those were drawn in a helper process during the data stage (no progress bar), not here by CLIP2SAM.
    assert (tmp_path / "run" / "data" / "piled_seed0_n4.npz").is_file()
    assert "seed (0, 1)" in captured.err and "seed (0, 77)" not in captured.err
    # --precision reached the teacher's process as well as this one.
    assert logs["teacher"]["precision"] == logs["clip"]["precision"] == logs["distill"]["precision"] == "bf16"
    # A second call finds every stage done and retrains nothing.
    assert main(["train", "--out", str(tmp_path / "run"), "--quick", "--threads", "1"]) == 0
    assert capsys.readouterr().out.count("done already") == 5


def test_a_failed_stage_in_the_second_process_stops_the_run_with_its_output(tmp_path, capsys, monkeypatch) -> None:
    import sys

    from ovsam_model.cli import main
    from ovsam_model.training.pipeline import PipelineSettings, run_pipeline

    run_pipeline(CONFIG, tmp_path / "run", seed=0, stages=("clip", "teacher"), settings=PipelineSettings.quick())
    # A stand-in for the helper's interpreter that fails: what it prints must reach the user.
    failing = tmp_path / "failing-python"
    failing.write_text("#!/bin/sh\necho 'out of memory in the helper'\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(failing))
    assert main(["train", "--out", str(tmp_path / "run"), "--quick", "--threads", "1", "--jobs", "2"]) == 1
    error = capsys.readouterr().err
    assert "the recognition stage's process exited with 3" in error and "out of memory in the helper" in error
    # The stages beside it ran to the end; recognition is left to train.
    assert (tmp_path / "run" / "clip2sam" / "final.pt").is_file()
    assert not (tmp_path / "run" / "recognition" / "final.pt").exists()


def test_piled_scenes_rendered_beside_are_those_clip2sam_would_draw(tmp_path) -> None:
    from ovsam_model.commands.train import render_piles_beside
    from ovsam_model.synthetic.scenes import SceneSet
    from ovsam_model.training.data import piled_scenes_path, piled_training_scenes

    future = render_piles_beside(tmp_path / "data", 3, 5)
    assert future is not None and future.result() is None
    beside = SceneSet.load(piled_scenes_path(tmp_path / "data", 3, 5))
    here = piled_training_scenes(tmp_path / "here", 3, 5, progress=False)
    assert len(beside) == 5
    for name in ("images", "instance_maps", "labels"):
        assert np.array_equal(getattr(beside, name), getattr(here, name)), name
    assert render_piles_beside(tmp_path / "data", 3, 5) is None   # cached: nothing to draw
    assert render_piles_beside(tmp_path / "none", 3, 0) is None and not (tmp_path / "none").exists()


def test_piled_scenes_join_only_the_clip2sam_stages_scenes(tmp_path, capsys) -> None:
    from ovsam_model.cli import main
    from ovsam_model.synthetic.scenes import SceneSet
    from ovsam_model.training.data import piled_training_scenes
    from ovsam_model.training.pipeline import PipelineSettings, run_pipeline

    out = tmp_path / "run"
    quick = PipelineSettings.quick()
    run_pipeline(CONFIG, out, seed=0, stages=("clip", "teacher", "distill"), settings=quick)
    assert main(["train", "--out", str(out), "--quick", "--threads", "1", "--stage", "clip2sam",
                 "--piled-scenes", "6"]) == 0
    log = json.loads((out / "clip2sam" / "log.json").read_text())
    assert log["scenes"] == quick.num_scenes + 6
    piles = SceneSet.load(out / "data" / "piled_seed0_n6.npz")
    assert len(piles) == 6 and np.array_equal(piles.images, piled_training_scenes(tmp_path / "again", 0, 6).images)
    assert json.loads((out / "settings.json").read_text())["clip2sam"]["piled_scenes"] == 6
    # 0 trains on the run's scenes alone (the recipe of the files shipped before the piles).
    assert main(["train", "--out", str(out), "--quick", "--threads", "1", "--stage", "clip2sam", "--force",
                 "--piled-scenes", "0"]) == 0
    assert json.loads((out / "clip2sam" / "log.json").read_text())["scenes"] == quick.num_scenes
    assert main(["train", "--out", str(out), "--piled-scenes", "-1"]) == 2
    assert "--piled-scenes must be 0 or more" in capsys.readouterr().err


def test_train_command_one_job_runs_the_stages_in_order_in_one_process(tmp_path, capsys, monkeypatch) -> None:
    from ovsam_model.cli import main
    from ovsam_model.training import precision as precision_module

    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: False)
    assert main(["train", "--out", str(tmp_path / "run"), "--quick", "--threads", "1", "--jobs", "1"]) == 0
    assert "training in process" not in capsys.readouterr().out
    assert not (tmp_path / "run" / "teacher.log").exists() and (tmp_path / "run" / "recognition" / "final.pt").is_file()
    logs = json.loads((tmp_path / "run" / "training_log.json").read_text())
    # Without --precision each stage keeps the recipe's: the teacher in fp32, and the CLIP and SAM2CLIP
    # stages in fp32 too on a CPU without bfloat16 instructions (in bf16 on one with them: the test below).
    assert (logs["clip"]["precision"], logs["teacher"]["precision"], logs["distill"]["precision"]) == ("fp32",) * 3


@pytest.mark.parametrize("native, precision, trained_in, said", [
    (True, None, "bf16", "CLIP stage in bf16: this CPU has bfloat16 instructions"),
    (False, None, "fp32", "CLIP stage in fp32: this CPU has no bfloat16 instructions"),
    (None, None, "fp32", "cannot tell whether this CPU has bfloat16 instructions"),
    (False, "bf16", "bf16", "no bfloat16 instructions, so the CLIP, teacher, SAM2CLIP stage's bf16 steps"),
    (False, "fp32", "fp32", None),
    (None, "bf16", "bf16", None),
])
def test_train_command_picks_the_clip_stages_precision_by_the_cpu_and_warns_before_emulating_bf16(
        tmp_path, capsys, monkeypatch, native, precision, trained_in, said) -> None:
    from ovsam_model.cli import main
    from ovsam_model.training import precision as precision_module

    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: native)
    stages = ["--stage", "clip", "--quick", "--threads", "1"] + (["--precision", precision] if precision else [])
    assert main(["train", "--out", str(tmp_path / "run"), *stages]) == 0
    printed = capsys.readouterr()
    if said is None:
        assert "bfloat16 instructions" not in printed.out + printed.err
    else:
        assert said in printed.out + printed.err
    logs = json.loads((tmp_path / "run" / "training_log.json").read_text())
    assert logs["clip"]["precision"] == trained_in


def test_a_stages_precision_setting_resolves_to_an_arithmetic(monkeypatch) -> None:
    from ovsam_model.training import precision as precision_module
    from ovsam_model.training.precision import resolve_precision

    for native, arithmetic in ((True, "bf16"), (False, "fp32"), (None, "fp32")):
        monkeypatch.setattr(precision_module, "native_bfloat16", lambda native=native: native)
        assert resolve_precision("auto") == arithmetic
        assert (resolve_precision("fp32"), resolve_precision("bf16")) == ("fp32", "bf16")
    with pytest.raises(ValueError, match="'auto' or one of fp32, bf16, got 'fp16'"):
        resolve_precision("fp16")


def test_an_interrupted_stage_resumes_with_the_same_batches(tmp_path, monkeypatch) -> None:
    from ovsam_model.training import common

    monkeypatch.setattr(common, "CHECKPOINT_EVERY_S", -1.0)  # checkpoint after every step

    def run(stop_at: int | None) -> list[int]:
        module = torch.nn.Linear(2, 1)
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
        rng = np.random.default_rng(7)
        drawn: list[int] = []

        def step(i: int) -> dict[str, float]:
            if i == stop_at:
                raise KeyboardInterrupt
            drawn.append(int(rng.integers(1000)))
            loss = module(torch.ones(1, 2)).pow(2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return {"loss": loss.item()}

        common.train_loop(common.StageRun(tmp_path / "stage"), "t", 6,
                          {"m": module}, optimizer, 1e-2, step, warmup=1, data_rng=rng)
        return drawn

    rng = np.random.default_rng(7)
    reference = [int(rng.integers(1000)) for _ in range(6)]
    with pytest.raises(KeyboardInterrupt):
        run(stop_at=3)
    assert (tmp_path / "stage" / "checkpoint.pt").is_file()
    assert run(stop_at=None) == reference[3:]  # resumed at step 3 with the data stream where it was


def test_a_thread_schedule_sets_each_steps_threads_and_is_logged(tmp_path) -> None:
    from ovsam_model.training import common

    module = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    schedule = iter([1, 1, 2, 2, 2])
    seen: list[int] = []

    def step(i: int) -> dict[str, float]:
        seen.append(torch.get_num_threads())
        return {"loss": 0.0}

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        log = common.train_loop(common.StageRun(tmp_path / "stage"), "t", 5, {"m": module}, optimizer, 1e-2, step,
                                warmup=1, threads=lambda: next(schedule))
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1, 2, 2, 2]
    assert log["thread_changes"] == [(2, 2)]


def test_the_clip_stage_takes_every_thread_once_the_teacher_process_has_exited() -> None:
    import subprocess
    import sys

    from ovsam_model.commands.train import threads_beside

    # A stand-in for the teacher's process that runs until its stdin closes.
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    schedule = threads_beside(process, 2)
    try:
        assert schedule() == 1
    finally:
        process.stdin.close()
        process.wait(timeout=30)
    assert schedule() == 2
