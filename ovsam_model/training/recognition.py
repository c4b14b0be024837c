"""Stage (e), recognition: the FPN and the RoI projection trained again, on CLIP features computed once.

The paper's CLIP2SAM loss is a sum whose parts touch disjoint weights: the mask terms train the
decoder; the cross-entropy trains the FPN and `roi_conv`, because the class comes from RoI features
of the frozen CLIP pooled at the box of the predicted mask, and a box taken from a thresholded mask
carries no gradient back to the decoder. So recognition can be trained on its own without changing
the objective, and since CLIP is frozen its features need computing only once. That is what this
stage does: CLIP's features of every training scene, in each of its 8 flips and quarter turns, are
computed once and kept in memory; the FPN and `roi_conv` then train on them, from a fresh start,
for many more steps than the joint stage can afford (each joint step runs CLIP, the adapter and the
decoder). In the joint stage, recognition fits its own training scenes no better than held-out ones
(base-class accuracy 0.77 on both for the release of 2026-12-02): it was under-trained, not
over-fitted.

Invariants:
- Only base classes: the training scenes hold no novel object and the text embeddings are those of
  the base classes.
- The boxes are the ground-truth objects' boxes, jittered as the prompts' are, in network-input
  pixels; each is pooled from the pyramid level the model's level rule gives it, as at inference.
- Only CLIP's levels from `first_level` up are kept. A box the level rule maps to a finer level
  than that is left out (and counted in the log); the FPN's finer levels keep the joint stage's
  weights.
- The decoder, CLIP, the adapter and the prompt encoder are not touched, and nothing this stage
  reads comes from them but CLIP: it needs only the CLIP stage, so it can run beside the SAM2CLIP
  and CLIP2SAM stages. Its result holds only what it trained (`trained_state`); the model takes it
  over the joint stage's (`load_trained_state`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.modeling.region_pooling import box_levels
from ovsam_model.synthetic.classes import BASE_CLASSES, BASE_INDICES
from ovsam_model.synthetic.prompts import jitter_box
from ovsam_model.synthetic.scenes import Scene, SceneSet
from ovsam_model.training.clip2sam import BACKGROUND_WEIGHT, class_text_embeddings
from ovsam_model.training.common import StageRun, seed_everything, train_loop
from ovsam_model.training.data import DIHEDRAL_VARIANTS, dihedral
from ovsam_model.training.features import cache_trunk_levels
from ovsam_model.training.losses import classification_loss

# A class index (into CLASS_NAMES) -> its column among the base classes' logits (-1: not a base class).
BASE_POSITION = torch.full((max(BASE_INDICES) + 1,), -1, dtype=torch.long)
BASE_POSITION[torch.tensor(BASE_INDICES)] = torch.arange(len(BASE_INDICES))


@dataclass
class RecognitionStageSettings:
    steps: int = 10000
    boxes_per_step: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    # Flips and quarter turns of each scene whose features are cached (1-8). CLIP's features are not
    # equivariant to them, so each is new data: with 1 the head over-fitted (training accuracy 0.97,
    # held-out 0.85), with 8 it did not.
    variants: int = DIHEDRAL_VARIANTS
    # Each side moves by a normal offset of this x the box's side, at most the limit (pixels).
    box_jitter: float = 0.1
    box_jitter_limit: float = 16.0
    # CLIP levels kept, from this one up. ovsam-shapes pools every object of 32 px and more from the
    # top level (3), whose features take 64 KB a scene in float16: 2.1 GB for 4,000 scenes x 8.
    first_level: int = 3


@dataclass
class RegionSet:
    """Cached CLIP features and the objects to recognise in them."""
    levels: list[Tensor]  # CLIP's levels first_level.., each [images, C, h, w] float16
    boxes: Tensor         # [M, 4] network-input pixels
    labels: Tensor        # [M] class indices into CLASS_NAMES (base classes only)
    image: Tensor         # [M] index of each box's image in `levels`
    first_level: int
    left_out: int         # boxes the level rule maps below first_level


@torch.no_grad()
def cache_regions(model: OVSAM, scenes: SceneSet, variants: int, first_level: int, batch: int = 32) -> RegionSet:
    """CLIP's levels from `first_level` up for the first `variants` flips/turns of every scene, and
    the boxes and labels of the objects they show."""
    if not 1 <= variants <= DIHEDRAL_VARIANTS:
        raise ValueError(f"variants must be in 1..{DIHEDRAL_VARIANTS}, got {variants}")
    num_levels = len(model.config.backbone_strides)
    if not 0 <= first_level < num_levels:
        raise ValueError(f"first_level must be in 0..{num_levels - 1}, got {first_level}")
    scale = model.config.image_size / scenes.images.shape[1]
    count = len(scenes)
    boxes, labels, image = [], [], []
    for variant in range(variants):
        for i in range(count):
            scene = scenes.scene(i)
            if len(scene.labels) == 0:
                continue
            turned = Scene(scene.image, dihedral(scene.instance_map, variant), scene.labels)
            boxes.append(turned.boxes * scale)
            labels.append(scene.labels)
            image.append(np.full(len(scene.labels), variant * count + i))
    # Boxes first, then the features (see cache_trunk_levels on the heap).
    def batches() -> Iterator[np.ndarray]:
        for variant in range(variants):
            for start in tqdm(range(0, count, batch), desc=f"recognition features {variant + 1}/{variants}"):
                yield np.stack([dihedral(scenes.images[i], variant) for i in range(start, min(start + batch, count))])

    kept = cache_trunk_levels(model, batches(), variants * count, first_level)
    all_boxes = torch.from_numpy(np.concatenate(boxes))
    inside = box_levels(all_boxes, model.config.roi_finest_scale, num_levels) >= first_level
    return RegionSet(
        levels=kept,
        boxes=all_boxes[inside],
        labels=torch.from_numpy(np.concatenate(labels))[inside],
        image=torch.from_numpy(np.concatenate(image))[inside],
        first_level=first_level,
        left_out=int((~inside).sum()),
    )


def jittered_boxes(model: OVSAM, boxes: Tensor, first_level: int, rng: np.random.Generator, amount: float,
                   limit: float) -> Tensor:
    """The boxes jittered (see `jitter_box`) as a predicted mask's box is off its object's; a box the
    jitter would move below `first_level` stays as it was."""
    moved = torch.from_numpy(jitter_box(boxes.numpy(), rng, amount, limit))
    below = box_levels(moved, model.config.roi_finest_scale, len(model.config.backbone_strides)) < first_level
    moved[below] = boxes[below]
    return moved


def recognition_loss(model: OVSAM, regions: RegionSet, text: Tensor, index: Tensor, rng: np.random.Generator,
                     box_jitter: float, box_jitter_limit: float) -> Tensor:
    """Cross-entropy over the base classes (+ background, weighted down as in the paper) of the
    region embeddings of the boxes `index`."""
    images, local_index = torch.unique(regions.image[index], return_inverse=True)
    levels = [level[images].float() for level in regions.levels]
    pyramid = model.pyramid(levels, regions.first_level)
    boxes = jittered_boxes(model, regions.boxes[index], regions.first_level, rng, box_jitter, box_jitter_limit)
    embedding = model.region_embedding(pyramid, boxes, local_index)
    return classification_loss(model.classify(embedding, text), BASE_POSITION[regions.labels[index]], BACKGROUND_WEIGHT)


def recognition_modules(model: OVSAM, first_level: int) -> list[torch.nn.Module]:
    """What this stage trains: the FPN's lateral and output convolutions of the levels from
    `first_level` up, and `roi_conv`."""
    fpn = model.fpn_neck
    return [*fpn.lateral_convs[first_level:], *fpn.fpn_convs[first_level:], model.mask_decoder.roi_conv]


def trained_state(model: OVSAM, first_level: int) -> dict[str, Any]:
    """What this stage trained: the FPN's weights of the levels from `first_level` up, `roi_conv`."""
    prefixes = tuple(f"{kind}.{level}." for kind in ("lateral_convs", "fpn_convs")
                     for level in range(first_level, len(model.fpn_neck.lateral_convs)))
    return {"fpn_neck": {k: v for k, v in model.fpn_neck.state_dict().items() if k.startswith(prefixes)},
            "roi_conv": model.mask_decoder.roi_conv.state_dict(), "first_level": first_level}


def load_trained_state(model: OVSAM, state: dict[str, Any]) -> None:
    """Puts a `trained_state` into `model`, over the FPN's and roi_conv's weights it had. (A result
    without `first_level`, from before the stage saved only what it trained, holds the whole FPN.)"""
    first_level = int(state.get("first_level", 0))
    expected = trained_state(model, first_level)["fpn_neck"].keys()
    if set(state["fpn_neck"]) != set(expected):
        raise ValueError(f"the recognition result's FPN weights {sorted(state['fpn_neck'])} are not those of the "
                         f"levels from {first_level} up {sorted(expected)}: it was trained for another configuration")
    model.fpn_neck.load_state_dict(state["fpn_neck"], strict=False)
    model.mask_decoder.roi_conv.load_state_dict(state["roi_conv"])


def reset_recognition(modules: list[torch.nn.Module]) -> None:
    """Freshly initialised weights (from torch's generator) for every convolution in `modules`."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d):
                layer.reset_parameters()


def train_recognition(model: OVSAM, scenes: SceneSet, run: StageRun, seed: int,
                      settings: RecognitionStageSettings) -> dict[str, Any]:
    seed_everything(seed)
    model.eval()
    started = time.monotonic()
    regions = cache_regions(model, scenes, settings.variants, settings.first_level)
    caching_s = time.monotonic() - started
    text = class_text_embeddings(model, list(BASE_CLASSES))
    trained = recognition_modules(model, settings.first_level)
    reset_recognition(trained)
    params = [p for module in trained for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng((seed, 7))

    def step(i: int) -> dict[str, float]:
        index = torch.from_numpy(rng.integers(len(regions.labels), size=settings.boxes_per_step))
        loss = recognition_loss(model, regions, text, index, rng, settings.box_jitter, settings.box_jitter_limit)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"ce": loss.item()}

    log = train_loop(run, "recognition", settings.steps,
                     {"fpn_neck": model.fpn_neck, "roi_conv": model.mask_decoder.roi_conv}, optimizer, settings.lr,
                     step, data_rng=rng)
    model.eval()
    # The stage's wall time includes computing the features (the training loop's alone is kept too).
    log.update(boxes=len(regions.labels), boxes_left_out=regions.left_out,
               cached_images=int(regions.levels[0].shape[0]), feature_caching_s=caching_s,
               training_loop_s=log["wall_time_s"], wall_time_s=log["wall_time_s"] + caching_s)
    run.save_final(trained_state(model, settings.first_level), log)
    return log
