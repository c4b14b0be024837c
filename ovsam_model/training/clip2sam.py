"""Stage (d), CLIP2SAM: the mask decoder (from the teacher's), the FPN over CLIP's levels and the RoI
recognition head, trained with the paper's losses: cross-entropy against base-class text embeddings
with a low background weight, and point-sampled mask BCE + Dice; prompts half boxes, half points.
Frozen: CLIP, the SAM2CLIP adapter, the prompt encoder (the teacher's)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ovsam_model.evaluation.baselines import image_crop_embeddings
from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.modeling.clip_backbone import trunk_features
from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.synthetic.classes import BASE_CLASSES, BASE_INDICES
from ovsam_model.synthetic.scenes import SceneSet
from ovsam_model.training.common import StageRun, ThreadSchedule, seed_everything, train_loop
from ovsam_model.training.data import PROMPT_KINDS, augment, normalise, prompts_of_kind, sample_scene_prompts
from ovsam_model.training.losses import classification_loss, mask_losses
from ovsam_model.training.teacher import TeacherSAM
from ovsam_model.vocabulary import encode_class_names

# The paper's loss weights.
CE_WEIGHT, BCE_WEIGHT, DICE_WEIGHT = 2.0, 5.0, 5.0
BACKGROUND_WEIGHT = 0.1


@dataclass
class Clip2SamStageSettings:
    # Recognition (FPN + roi_conv, new) needs far longer than the masks: held-out base accuracy was
    # 0.77 after 800 steps, 0.82 after 2,000; 3,000 gained little more on base and no novel accuracy
    # (the trials: docs/model-card-ovsam-shapes.md, Limits).
    steps: int = 2000
    images_per_step: int = 4
    prompts_per_image: int = 10
    lr: float = 5e-4
    weight_decay: float = 0.05
    # The FPN and RoI projection start from scratch while the decoder starts from the teacher's:
    # they learn at a higher rate.
    recognition_lr_scale: float = 4.0
    # 0 (the paper's recipe): recognition learns from the base-class CE alone. Above 0, an ablation:
    # also pull each region embedding towards CLIP's own image embedding of a crop around its target
    # object (ViLD's image distillation), weighted by this.
    crop_distill_weight: float = 0.0
    # Scenes of 3-6 objects piled around one point (`piled_training_scenes`) added to the run's scenes,
    # for masks that keep to their object where objects lie on each other, as in the demo's default
    # world: the run's scenes alone rarely pile objects up. 0 trains on the run's scenes alone (the
    # recipe of the files shipped before; trials in the model card).
    piled_scenes: int = 2000


def init_from_teacher(model: OVSAM, teacher: TeacherSAM) -> None:
    """The student's prompt encoder is the teacher's (frozen); its decoder starts from the teacher's."""
    model.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    source = teacher.mask_decoder.state_dict()
    target = model.mask_decoder.mask_decoder
    shared = {k: v for k, v in source.items() if k in target.state_dict()}
    missing = set(target.state_dict()) - set(shared)
    if missing:
        raise RuntimeError(f"teacher decoder lacks {sorted(missing)}: the teacher and the model configs disagree")
    target.load_state_dict(shared)


@torch.no_grad()
def class_text_embeddings(model: OVSAM, names: list[str]) -> Tensor:
    return encode_class_names(model.encode_text, names, progress=False)


def trainable_parameters(model: OVSAM) -> list[torch.nn.Parameter]:
    return list(model.mask_decoder.parameters()) + list(model.fpn_neck.parameters())


def clip2sam_loss(model: OVSAM, text: Tensor, scenes: SceneSet, index: np.ndarray, rng: np.random.Generator,
                  prompts_per_image: int, crop_distill_weight: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """The paper's weighted sum of CE (base classes + background), mask BCE and Dice over the box and
    point prompts of the scenes `index` (plus the crop distillation when its weight is above 0); also
    each term's value. Each term is a mean over all the step's prompts of its kind, weighted by that
    kind's share of them; the prompts of all images go through the decoder together (one call per
    kind: a call per image was overhead-bound, and the losses are the same). The FPN is computed only
    from the finest level a predicted mask's box is pooled from: the finer levels, most of the FPN's
    work, would get no gradient, so the loss and its gradients are those of the whole pyramid."""
    to_base = {c: i for i, c in enumerate(BASE_INDICES)}
    images, maps = augment(scenes.images[index], scenes.instance_maps[index], rng)
    pixels = normalise(images, model.config)
    with torch.no_grad():
        levels = trunk_features(model.clip.visual, pixels)
        embedding = model.neck_student(levels)
    prompts = sample_scene_prompts(scenes, index, maps, rng, model.config.image_size, prompts_per_image)
    decoded = []
    for kind in PROMPT_KINDS:
        gathered = prompts_of_kind(prompts, kind)
        if gathered is not None:
            decoded.append((gathered, model.decode_masks(embedding, image_index=gathered.image_index,
                                                         **{kind: gathered.prompts})))
    totals = {"ce": 0.0, "bce": 0.0, "dice": 0.0}
    if crop_distill_weight > 0:
        totals["distill"] = 0.0
    loss = pixels.new_zeros(())
    if not decoded:
        return loss, totals
    first = model.finest_level(torch.cat([masks.mask_boxes for _, masks in decoded]))
    pyramid = model.pyramid(levels[first:], first)
    for gathered, masks in decoded:
        region_embedding = model.region_embedding(pyramid, masks.mask_boxes, masks.image_index)
        bce, dice = mask_losses(masks.mask_logits, gathered.targets)
        logits = model.classify(region_embedding, text)
        ce = classification_loss(logits, torch.tensor([to_base[int(c)] for c in gathered.labels]), BACKGROUND_WEIGHT)
        share = len(gathered.labels) / (prompts_per_image * len(index))
        loss = loss + share * (CE_WEIGHT * ce + BCE_WEIGHT * bce + DICE_WEIGHT * dice)
        totals["ce"] += share * ce.item()
        totals["bce"] += share * bce.item()
        totals["dice"] += share * dice.item()
        if crop_distill_weight > 0:
            boxes = masks_to_boxes(gathered.targets[:, 0].numpy() > 0.5)
            on_image = gathered.image_index.numpy()
            target = torch.cat([image_crop_embeddings(model, images[b], boxes[on_image == b])
                                for b in dict.fromkeys(on_image.tolist())])  # the prompts' order: image by image
            distill = (1 - F.cosine_similarity(region_embedding, target, dim=-1)).mean()
            loss = loss + share * crop_distill_weight * distill
            totals["distill"] += share * distill.item()
    return loss, totals


def freeze_for_clip2sam(model: OVSAM) -> None:
    """CLIP, the adapter and the prompt encoder stay frozen; the head and the FPN train."""
    for module in (model.clip, model.neck_student, model.prompt_encoder):
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
    model.mask_decoder.train()
    model.fpn_neck.train()


def train_clip2sam(model: OVSAM, teacher: TeacherSAM, scenes: SceneSet, run: StageRun, seed: int,
                   settings: Clip2SamStageSettings,
                   threads: ThreadSchedule | None = None) -> dict[str, Any]:
    seed_everything(seed)
    with torch.no_grad():
        init_from_teacher(model, teacher)
    freeze_for_clip2sam(model)
    # Recognition is trained against base classes only: novel names never enter training.
    text = class_text_embeddings(model, list(BASE_CLASSES))
    params = trainable_parameters(model)
    decoder_params = list(model.mask_decoder.mask_decoder.parameters())
    decoder_ids = {id(p) for p in decoder_params}
    optimizer = torch.optim.AdamW([
        {"params": decoder_params, "lr_scale": 1.0},
        {"params": [p for p in params if id(p) not in decoder_ids], "lr_scale": settings.recognition_lr_scale},
    ], lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng((seed, 6))

    def step(i: int) -> dict[str, float]:
        index = rng.integers(len(scenes), size=settings.images_per_step)
        loss, totals = clip2sam_loss(model, text, scenes, index, rng, settings.prompts_per_image,
                                     settings.crop_distill_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return totals

    log = train_loop(run, "clip2sam", settings.steps,
                     {"mask_decoder": model.mask_decoder, "fpn_neck": model.fpn_neck}, optimizer, settings.lr, step,
                     data_rng=rng, threads=threads)
    log["scenes"] = len(scenes)
    model.eval()
    run.save_final({"mask_decoder": model.mask_decoder.state_dict(), "fpn_neck": model.fpn_neck.state_dict()}, log)
    return log
