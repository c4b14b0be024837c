"""The paper's evaluation on a held-out synthetic set: prompted-mask mIoU (box and point prompts)
and recognition accuracy, each for base and novel classes, beside the naive baseline the paper
beats (the teacher SAM's mask, then the small CLIP on the mask's crop)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ovsam_model.checkpoint import read_state_dict
from ovsam_model.config import OVSAMConfig
from ovsam_model.model import OVSAM
from ovsam_model.synthetic.classes import CLASS_NAMES, NOVEL_INDICES
from ovsam_model.synthetic.crops import crop_square
from ovsam_model.synthetic.prompts import mask_centre_point
from ovsam_model.synthetic.scenes import SceneSet, generate_scene_set
from ovsam_model.training.teacher import TeacherSAM

# Training derives its streams from (run seed, stream id) pairs; this single integer seeds no
# training stream, so the held-out scenes are never seen in training.
HELD_OUT_SEED = 20_241_125
DEFAULT_HELD_OUT_SCENES = 400


def held_out_scenes(num_scenes: int = DEFAULT_HELD_OUT_SCENES, seed: int = HELD_OUT_SEED) -> SceneSet:
    """Fresh scenes over all 42 classes (base and novel), 256x256."""
    return generate_scene_set(num_scenes, seed=seed, size=256)


def mask_iou(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU per instance of boolean masks [N, H, W]."""
    inter = (predicted & target).sum(axis=(1, 2))
    union = (predicted | target).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


@dataclass
class MethodRecord:
    box_iou: list[float] = field(default_factory=list)
    point_iou: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    seconds: float = 0.0  # time of the box-prompt path: image encoding, masks and naming
    prompt_seconds: float = 0.0  # of which per-prompt work (everything after the image encoding)
    images: int = 0
    prompts: int = 0

    def add(self, box_iou: np.ndarray, point_iou: np.ndarray | None, correct: np.ndarray, seconds: float,
            prompt_seconds: float) -> None:
        self.box_iou += box_iou.tolist()
        if point_iou is not None:
            self.point_iou += point_iou.tolist()
        self.correct += correct.tolist()
        self.seconds += seconds
        self.prompt_seconds += prompt_seconds
        self.images += 1
        self.prompts += len(box_iou)

    def summary(self, novel: np.ndarray) -> dict[str, float]:
        def mean(values: list, which: np.ndarray | None = None) -> float:
            array = np.asarray(values, dtype=np.float64)
            if which is not None:
                array = array[which]
            return float(array.mean()) if len(array) else float("nan")

        out = {
            "box_miou": mean(self.box_iou),
            "box_miou_base": mean(self.box_iou, ~novel),
            "box_miou_novel": mean(self.box_iou, novel),
            "acc_base": mean(self.correct, ~novel),
            "acc_novel": mean(self.correct, novel),
            "accuracy": mean(self.correct),
            "ms_per_prompt": 1000.0 * self.seconds / max(self.prompts, 1),
            # The split: per-image encoding, and the cost of each further prompt on an encoded image.
            "encode_ms_per_image": 1000.0 * (self.seconds - self.prompt_seconds) / max(self.images, 1),
            "marginal_ms_per_prompt": 1000.0 * self.prompt_seconds / max(self.prompts, 1),
        }
        if self.point_iou:
            out.update({
                "point_miou": mean(self.point_iou),
                "point_miou_base": mean(self.point_iou, ~novel),
                "point_miou_novel": mean(self.point_iou, novel),
            })
        return out


def _masks_at(model: OVSAM, mask_logits: Tensor, size: tuple[int, int]) -> np.ndarray:
    return (model.postprocess_masks(mask_logits, size)[:, 0] > 0).cpu().numpy()


def class_logits(model: OVSAM, features, output, text: Tensor, base_mask: Tensor) -> Tensor:
    """The model's class scores [N, K] (background column dropped), with the CLIP branch when enabled."""
    if model.config.use_clip_branch:
        scores = model.classify_with_clip_branch(features, output, text, base_classes=base_mask)
    else:
        scores = model.classify(output.region_embedding, text)
    return scores[:, :-1]


@torch.no_grad()
def evaluate(model: OVSAM, text_embeddings: Tensor, scenes: SceneSet, teacher: TeacherSAM | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Figures of the model (and of the baseline when a teacher is given) on `scenes`.

    `text_embeddings` (42, P, D) are the class embeddings in CLASS_NAMES order. Accuracy is the
    top-1 class of each box prompt's region among all 42 classes."""
    model.eval()
    novel_set = set(NOVEL_INDICES)
    base_mask = torch.tensor([i not in novel_set for i in range(len(CLASS_NAMES))])
    ours, baseline = MethodRecord(), MethodRecord()
    labels_all: list[int] = []
    crop = int(model.config.clip["model_cfg"]["vision_cfg"]["image_size"]) if "model_cfg" in model.config.clip else 224
    text_flat = F.normalize(text_embeddings[:, 0].float(), dim=-1)
    for i in tqdm(range(len(scenes)), desc="held-out scenes", disable=not progress):
        scene = scenes.scene(i)
        if len(scene.labels) == 0:
            continue
        masks, size = scene.masks, scene.image.shape[:2]
        labels_all += scene.labels.tolist()

        started = time.perf_counter()
        pixels, scale = model.preprocess(scene.image)
        features = model.encode_image(pixels)
        encoded = time.perf_counter()
        boxes = torch.from_numpy(scene.boxes) * scale
        output = model.decode(features, boxes=boxes)
        predicted_class = class_logits(model, features, output, text_embeddings, base_mask).argmax(1).numpy()
        box_masks = _masks_at(model, output.mask_logits, size)
        finished = time.perf_counter()
        points = torch.from_numpy(np.stack([mask_centre_point(m) for m in masks]))[:, None] * scale
        point_output = model.decode(features, points=points, point_labels=torch.ones(points.shape[:2]))
        ours.add(mask_iou(box_masks, masks), mask_iou(_masks_at(model, point_output.mask_logits, size), masks),
                 predicted_class == scene.labels, finished - started, finished - encoded)

        if teacher is not None:
            started = time.perf_counter()
            teacher_pixels, _ = model.preprocess(scene.image)  # the same input preparation, timed for both
            embedding = teacher.image_encoder(teacher_pixels)
            encoded = time.perf_counter()
            teacher_masks = _masks_at(model, teacher.decode(embedding, boxes=boxes), size)
            crops = np.stack([crop_square(scene.image, _mask_box(m, b), crop) for m, b in zip(teacher_masks, scene.boxes)])
            crop_pixels = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - model.pixel_mean) / model.pixel_std
            image_features = F.normalize(model.clip.encode_image(crop_pixels), dim=-1)
            clip_class = (image_features @ text_flat.t()).argmax(1).numpy()
            finished = time.perf_counter()
            teacher_point_masks = _masks_at(model, teacher.decode(embedding, points=points), size)
            baseline.add(mask_iou(teacher_masks, masks), mask_iou(teacher_point_masks, masks),
                         clip_class == scene.labels, finished - started, finished - encoded)

    novel = np.isin(np.asarray(labels_all), NOVEL_INDICES)
    result: dict[str, Any] = {**ours.summary(novel), "n_instances": len(labels_all),
                              "n_novel": int(novel.sum()), "n_scenes": len(scenes)}
    if teacher is not None:
        result["baseline"] = baseline.summary(novel)
    return result


def _mask_box(mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return fallback
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def load_teacher_file(config: OVSAMConfig, path: str | Path) -> TeacherSAM:
    """The teacher SAM from the prompt-encoder-role file, which holds the whole small SAM as SAM's
    released checkpoint does."""
    teacher = TeacherSAM(config)
    state = read_state_dict(path)
    teacher.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return teacher.eval()


def format_table(result: dict[str, Any]) -> str:
    """The figures as a plain-text table: ours, and the baseline when present."""
    rows = [("OV-SAM (ours)", result)]
    if "baseline" in result:
        rows.append(("teacher SAM + CLIP crop", result["baseline"]))
    header = f"{'method':<26}{'box mIoU':>9}{'(base/novel)':>14}{'point mIoU':>11}{'acc base':>9}{'acc novel':>10}{'ms/prompt':>10}{'(image+prompt)':>16}"
    lines = [header, "-" * len(header)]
    for name, r in rows:
        lines.append(
            f"{name:<26}{r['box_miou']:>9.3f}{r['box_miou_base']:>7.3f}/{r['box_miou_novel']:<6.3f}"
            f"{r.get('point_miou', float('nan')):>11.3f}{r['acc_base']:>9.3f}{r['acc_novel']:>10.3f}{r['ms_per_prompt']:>10.1f}"
            f"{r['encode_ms_per_image']:>9.1f}+{r['marginal_ms_per_prompt']:<6.1f}"
        )
    lines.append(f"{result['n_instances']} instances ({result['n_novel']} novel) in {result['n_scenes']} held-out scenes")
    return "\n".join(lines)
