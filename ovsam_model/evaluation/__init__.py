"""The paper's comparison on a held-out synthetic set, in one run: prompted-mask mIoU (box and point
prompts) and recognition accuracy, each for base and novel classes, of

- OV-SAM as configured, and both with and without the evaluation-time CLIP-branch mixing
  (`classify_with_clip_branch`, alpha/beta from the config, as the released evaluation);
- the image-crop baseline (the teacher SAM's mask, a crop of the image, CLIP's image tower);
- the feature-crop baseline (the teacher SAM's mask, RoIAlign on CLIP's last stage of the whole
  image, CLIP's attention pool),
all on the same prompts and the same class text embeddings, with 95 % bootstrap intervals."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import Tensor
from tqdm import tqdm

from ovsam_model.checkpoint import read_state_dict
from ovsam_model.config import OVSAMConfig
from ovsam_model.evaluation.baselines import clip_last_stage, feature_crop_classes, image_crop_classes
from ovsam_model.evaluation.held_out import DEFAULT_HELD_OUT_SCENES, HELD_OUT_SEED, held_out_scenes
from ovsam_model.evaluation.records import MethodRecord, bootstrap_interval
from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.mask_iou import mask_iou
from ovsam_model.modeling.foreground import foreground
from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.synthetic.classes import CLASS_NAMES, NOVEL_INDICES
from ovsam_model.synthetic.prompts import mask_centre_point
from ovsam_model.synthetic.scenes import SceneSet
from ovsam_model.training.teacher import TeacherSAM

__all__ = ["DEFAULT_HELD_OUT_SCENES", "HELD_OUT_SEED", "MethodRecord", "bootstrap_interval", "evaluate",
           "format_table", "held_out_scenes", "load_teacher_file", "mask_iou", "ovsam_masks_at", "sam_masks_at"]

# Keys of the JSON kept stable for tooling (the list), besides the blocks named below.
HEAD_ONLY, CLIP_BRANCH = "head_only", "clip_branch"
IMAGE_CROP, FEATURE_CROP = "image_crop", "feature_crop"


def ovsam_masks_at(model: OVSAM, mask_logits: Tensor, size: tuple[int, int]) -> np.ndarray:
    """OV-SAM's masks [N, H, W] at an image's (height, width), by its official rule (sigmoid > 0.5,
    `foreground`): the masks the predictor and the node publish."""
    return foreground(model.postprocess_masks(mask_logits, size)[:, 0]).cpu().numpy()


def sam_masks_at(model: OVSAM, mask_logits: Tensor, size: tuple[int, int]) -> np.ndarray:
    """The teacher SAM's masks [N, H, W] at an image's (height, width), by SAM's own rule (logits
    above `Sam.mask_threshold`, 0.0), as its predictor gives them to the naive pipeline."""
    return (model.postprocess_masks(mask_logits, size)[:, 0] > Sam.mask_threshold).cpu().numpy()


def base_class_mask() -> Tensor:
    novel = set(NOVEL_INDICES)
    return torch.tensor([i not in novel for i in range(len(CLASS_NAMES))])


def head_scores(model: OVSAM, region_embedding: Tensor, text: Tensor) -> Tensor:
    """The RoI head's class scores [N, K] for region embeddings, background column dropped."""
    return model.classify(region_embedding, text)[:, :-1]


def class_logits(model: OVSAM, features, output, text: Tensor, base_mask: Tensor,
                 clip_branch: bool | None = None) -> Tensor:
    """The model's class scores [N, K] (background column dropped), with the CLIP branch when asked
    (by default when the config enables it)."""
    use_branch = model.config.use_clip_branch if clip_branch is None else clip_branch
    if use_branch:
        return model.classify_with_clip_branch(features, output, text, base_classes=base_mask)[:, :-1]
    return head_scores(model, output.region_embedding, text)


@torch.no_grad()
def evaluate(model: OVSAM, text_embeddings: Tensor, scenes: SceneSet, teacher: TeacherSAM | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Figures of OV-SAM (and of both baselines when a teacher is given) on `scenes`.

    `text_embeddings` (42, P, D) are the class embeddings in CLASS_NAMES order. Accuracy is the
    top-1 class of each prompt's region among all 42 classes; `acc_*` are for box prompts,
    `point_acc_*` for the point at the distance-transform centre of the ground-truth mask."""
    model.eval()
    base_mask = base_class_mask()
    methods = {name: MethodRecord() for name in (HEAD_ONLY, CLIP_BRANCH, IMAGE_CROP, FEATURE_CROP)}
    labels_all: list[int] = []
    scene_of: list[int] = []
    for i in tqdm(range(len(scenes)), desc="held-out scenes", disable=not progress):
        scene = scenes.scene(i)
        if len(scene.labels) == 0:
            continue
        masks, size = scene.masks, scene.image.shape[:2]
        labels_all += scene.labels.tolist()
        scene_of += [i] * len(scene.labels)
        truth = scene.labels

        started = time.perf_counter()
        pixels, _ = model.preprocess(scene.image)
        to_network = torch.tensor(model.input_scales(*size))  # x, y: as the predictor scales prompts
        box_to_network = to_network.repeat(2)
        features = model.encode_image(pixels)
        encoded = time.perf_counter()
        boxes = torch.from_numpy(scene.boxes) * box_to_network
        output = model.decode(features, boxes=boxes)
        head_class = class_logits(model, features, output, text_embeddings, base_mask,
                                  clip_branch=False).argmax(1).numpy()
        box_masks = ovsam_masks_at(model, output.mask_logits, size)
        finished = time.perf_counter()
        branch_class = class_logits(model, features, output, text_embeddings, base_mask,
                                    clip_branch=True).argmax(1).numpy()
        points = torch.from_numpy(np.stack([mask_centre_point(m) for m in masks]))[:, None] * to_network
        point_output = model.decode(features, points=points, point_labels=torch.ones(points.shape[:2]))
        point_head = class_logits(model, features, point_output, text_embeddings, base_mask,
                                  clip_branch=False).argmax(1).numpy()
        point_branch = class_logits(model, features, point_output, text_embeddings, base_mask,
                                    clip_branch=True).argmax(1).numpy()
        box_iou = mask_iou(box_masks, masks)
        point_iou = mask_iou(ovsam_masks_at(model, point_output.mask_logits, size), masks)
        methods[HEAD_ONLY].add(box_iou, point_iou, head_class == truth, point_head == truth,
                               finished - started, finished - encoded)
        methods[CLIP_BRANCH].add(box_iou, point_iou, branch_class == truth, point_branch == truth)

        if teacher is None:
            continue
        # Both baselines start from the teacher SAM's masks for the same prompts.
        started = time.perf_counter()
        teacher_pixels, _ = model.preprocess(scene.image)  # the same input preparation, timed for both
        embedding = teacher.image_encoder(teacher_pixels)
        encoded = time.perf_counter()
        teacher_box_masks = sam_masks_at(model, teacher.decode(embedding, boxes=boxes), size)
        box_crops = masks_to_boxes(teacher_box_masks)
        masks_done = time.perf_counter()
        image_crop_class = image_crop_classes(model, scene.image, box_crops, text_embeddings)
        image_crop_done = time.perf_counter()
        clip_last = clip_last_stage(model, teacher_pixels)
        trunk_done = time.perf_counter()
        feature_crop_class = feature_crop_classes(model, clip_last, torch.from_numpy(box_crops) * box_to_network,
                                                  text_embeddings)
        feature_crop_done = time.perf_counter()

        teacher_point_masks = sam_masks_at(model, teacher.decode(embedding, points=points), size)
        point_crops = masks_to_boxes(teacher_point_masks)
        point_image_crop = image_crop_classes(model, scene.image, point_crops, text_embeddings)
        point_feature_crop = feature_crop_classes(model, clip_last, torch.from_numpy(point_crops) * box_to_network,
                                                  text_embeddings)
        teacher_box_iou = mask_iou(teacher_box_masks, masks)
        teacher_point_iou = mask_iou(teacher_point_masks, masks)
        masks_seconds = masks_done - started
        methods[IMAGE_CROP].add(teacher_box_iou, teacher_point_iou, image_crop_class == truth,
                                point_image_crop == truth,
                                masks_seconds + image_crop_done - masks_done, image_crop_done - encoded)
        # The feature crop runs CLIP's trunk once per image: that is image encoding, not per-prompt work.
        trunk_seconds = trunk_done - image_crop_done
        methods[FEATURE_CROP].add(teacher_box_iou, teacher_point_iou, feature_crop_class == truth,
                                  point_feature_crop == truth,
                                  masks_seconds + trunk_seconds + feature_crop_done - trunk_done,
                                  masks_done - encoded + feature_crop_done - trunk_done)

    novel = np.isin(np.asarray(labels_all, dtype=np.int64), NOVEL_INDICES)
    scene_index = np.asarray(scene_of, dtype=np.int64)
    configured = CLIP_BRANCH if model.config.use_clip_branch else HEAD_ONLY
    head_only = methods[HEAD_ONLY].summary(novel, scene_index)
    clip_branch = methods[CLIP_BRANCH].summary(novel, scene_index, timed=False)
    result: dict[str, Any] = {
        **(clip_branch if configured == CLIP_BRANCH else head_only),
        "recognition": configured,
        "n_instances": len(labels_all), "n_novel": int(novel.sum()), "n_scenes": len(scenes),
        HEAD_ONLY: head_only,
        CLIP_BRANCH: {**clip_branch, "alpha": model.config.clip_branch_alpha, "beta": model.config.clip_branch_beta},
    }
    if teacher is not None:
        result["baselines"] = {name: methods[name].summary(novel, scene_index) for name in (IMAGE_CROP, FEATURE_CROP)}
    return result


def load_teacher_file(config: OVSAMConfig, path: str | Path) -> TeacherSAM:
    """The teacher SAM from the prompt-encoder-role file, which holds the whole small SAM as SAM's
    released checkpoint does."""
    teacher = TeacherSAM(config)
    state = read_state_dict(path)
    teacher.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return teacher.eval()


def _with_interval(figures: dict[str, Any], key: str) -> str:
    value = figures.get(key, float("nan"))
    low, high = figures.get("intervals", {}).get(key, [float("nan"), float("nan")])
    return f"{value:.3f} [{low:.3f},{high:.3f}]"


def format_table(result: dict[str, Any]) -> str:
    """The figures as a plain-text table: OV-SAM with and without the CLIP branch, and the baselines
    when present; accuracies with their 95 % intervals."""
    rows = [("OV-SAM (RoI head)", result[HEAD_ONLY]),
            (f"OV-SAM + CLIP branch (a={result[CLIP_BRANCH]['alpha']:g}, b={result[CLIP_BRANCH]['beta']:g})",
             result[CLIP_BRANCH])]
    baselines = result.get("baselines", {})
    if IMAGE_CROP in baselines:
        rows.append(("teacher SAM + CLIP image crop", baselines[IMAGE_CROP]))
    if FEATURE_CROP in baselines:
        rows.append(("teacher SAM + CLIP feature crop", baselines[FEATURE_CROP]))
    header = (f"{'method':<36}{'box mIoU':>9}{'point mIoU':>11}{'box acc base':>22}{'box acc novel':>22}"
              f"{'point acc base':>22}{'point acc novel':>22}{'ms/prompt':>10}")
    lines = [header, "-" * len(header)]
    for name, r in rows:
        ms = f"{r['ms_per_prompt']:>10.1f}" if "ms_per_prompt" in r else f"{'-':>10}"
        lines.append(f"{name:<36}{r['box_miou']:>9.3f}{r.get('point_miou', float('nan')):>11.3f}"
                     f"{_with_interval(r, 'acc_base'):>22}{_with_interval(r, 'acc_novel'):>22}"
                     f"{_with_interval(r, 'point_acc_base'):>22}{_with_interval(r, 'point_acc_novel'):>22}{ms}")
    lines.append(f"{result['n_instances']} instances ({result['n_novel']} novel) "
                 f"in {result['n_scenes']} held-out scenes; "
                 f"[95 % bootstrap interval over scenes]; top-level JSON figures are '{result['recognition']}'")
    return "\n".join(lines)
