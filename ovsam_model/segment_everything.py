"""Segment everything, and find the objects of named classes (as SAM's automatic_mask_generator.py).

`segment_everything(predictor, key)` prompts a grid of points on a cached image and keeps the
confident, stable, distinct masks; `find(predictor, "mug, bottle", key)` does the same with the
queried classes added to the vocabulary and keeps their instances. Both drive the predictor only
through its public methods (cached_image, decode, name, vocabulary_for, encode_text), so the
predictor stays about one prompt batch at a time.

The released OV-SAM has no automatic mode (its users asked for one in HarborYuan/ovsam #13, #24,
#54). SAM's recipe transfers: prompt every cell of a regular grid with one foreground point, keep
confident and stable masks, and drop near-duplicates (neighbouring grid points usually find the
same object). OV-SAM's decoder has no IoU head, so confidence here is the mean foreground
probability inside the mask instead of SAM's predicted IoU.
"""
from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Hashable, Sequence

import numpy as np
import torch

from ovsam_model.instances import InstancePrediction
from ovsam_model.modeling.foreground import FOREGROUND_LOGIT, foreground
from ovsam_model.prompts import PromptSpec
from ovsam_model.text_query import parse_text_query
from ovsam_model.vocabulary import Vocabulary

if TYPE_CHECKING:
    from ovsam_model.predictor import OVSAMPredictor


def grid_points(points_per_side: int, height: int, width: int) -> np.ndarray:
    """Centres of a points_per_side x points_per_side grid of cells over an image, as (N, 2)
    (x, y) pixel coordinates, row by row. Cell centres keep every point half a cell away from
    the border, where masks are least reliable."""
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be at least 1, got {points_per_side}")
    offsets = (np.arange(points_per_side, dtype=np.float64) + 0.5) / points_per_side
    ys, xs = np.meshgrid(offsets * height, offsets * width, indexing="ij")
    return np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1)


def mask_scores(mask_logits: torch.Tensor, threshold: float = FOREGROUND_LOGIT) -> torch.Tensor:
    """Mean foreground probability inside each mask (logits > threshold, by default the official
    foreground rule), 0 for an empty mask.

    mask_logits: (N, H, W) -> (N,)."""
    probabilities = torch.sigmoid(mask_logits.float())
    inside = (mask_logits > threshold).float()
    area = inside.flatten(1).sum(dim=1)
    total = (probabilities * inside).flatten(1).sum(dim=1)
    return torch.where(area > 0, total / area.clamp(min=1.0), torch.zeros_like(total))


def stability_scores(mask_logits: torch.Tensor, offset: float = 1.0,
                     threshold: float = FOREGROUND_LOGIT) -> torch.Tensor:
    """How little each mask changes when its binarising threshold moves by +-offset (in logits):
    area(logits > threshold + offset) / area(logits > threshold - offset), in [0, 1]; a mask that
    is empty at the low threshold counts as perfectly stable (1), as in SAM.

    mask_logits: (N, H, W) -> (N,)."""
    logits = mask_logits.float().flatten(1)
    strict = (logits > threshold + offset).sum(dim=1, dtype=torch.float64)
    loose = (logits > threshold - offset).sum(dim=1, dtype=torch.float64)
    ratio = torch.where(loose > 0, strict / loose.clamp(min=1.0), torch.ones_like(loose))
    return ratio.float()


def mask_iou_matrix(masks_a: torch.Tensor, masks_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of binary masks, (A, H, W) x (B, H, W) -> (A, B); two empty
    masks have IoU 0 (nothing to de-duplicate)."""
    if masks_a.shape[1:] != masks_b.shape[1:]:
        raise ValueError(f"mask sizes differ: {tuple(masks_a.shape[1:])} vs {tuple(masks_b.shape[1:])}")
    flat_a = masks_a.flatten(1).float()
    flat_b = masks_b.flatten(1).float()
    intersection = flat_a @ flat_b.T
    union = flat_a.sum(dim=1)[:, None] + flat_b.sum(dim=1)[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1.0), torch.zeros_like(union))


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression on masks: visit masks by descending score and keep one
    unless its mask IoU with an already kept mask exceeds iou_threshold.

    masks: (N, H, W) bool, scores: (N,) -> indices of the kept masks, best first (int64)."""
    if masks.shape[0] != scores.shape[0]:
        raise ValueError(f"{masks.shape[0]} masks but {scores.shape[0]} scores")
    if masks.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64)
    order = torch.argsort(scores.to(masks.device), descending=True, stable=True)
    # The IoU matrix is the heavy part and runs where the masks are; the greedy walk is cheap
    # and sequential, so it runs on the CPU.
    iou = mask_iou_matrix(masks[order], masks[order]).cpu()
    order = order.cpu()
    suppressed = torch.zeros(order.shape[0], dtype=torch.bool)
    kept: list[int] = []
    for rank in range(order.shape[0]):
        if suppressed[rank]:
            continue
        kept.append(rank)
        suppressed |= iou[rank] > iou_threshold
    return order[torch.tensor(kept, dtype=torch.int64)]


def segment_everything(
    predictor: "OVSAMPredictor",
    key: Hashable | None = None,
    *,
    points_per_side: int = 16,
    batch_size: int = 64,
    min_mask_score: float = 0.5,
    stability_threshold: float = 0.8,
    stability_offset: float = 1.0,
    nms_iou: float = 0.7,
    min_area: int = 16,
    max_instances: int = 100,
    top_k: int = 5,
    vocabulary: Vocabulary | None = None,
) -> list[InstancePrediction]:
    """Every object the model finds from a grid of single foreground-point prompts.

    The points_per_side^2 grid is decoded `batch_size` prompts at a time; masks whose mean
    foreground probability is below min_mask_score, whose stability (area ratio between
    thresholds +-stability_offset logits) is below stability_threshold, or whose area is
    below min_area original pixels are dropped; duplicates (mask IoU above nms_iou) are
    removed keeping the more confident mask; the rest are named and returned by descending
    label score, at most max_instances. Prompt ids are "grid-<i>" with i the grid point's
    index (row-major). Filtering and de-duplication use the decoder's stride-4 masks; the
    returned mask score and area are re-checked at the original resolution.
    """
    from ovsam_model.predictor import DecodedPrompts

    if not 1 <= points_per_side <= 128:
        raise ValueError(f"points_per_side must be in 1..128, got {points_per_side}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_instances < 0:
        raise ValueError(f"max_instances must be 0 or more, got {max_instances}")
    entry = predictor.cached_image(key)
    vocabulary = predictor.vocabulary_for(vocabulary)
    grid = grid_points(points_per_side, entry.height, entry.width)
    # Low-res masks are compared only over the part of the grid the image covers.
    stride = predictor.low_res_stride
    valid_h = math.ceil(entry.resized_height / stride)
    valid_w = math.ceil(entry.resized_width / stride)
    # Original pixels per low-res cell, for the area pre-filter.
    cell_area = (entry.height / (entry.resized_height / stride)) * (entry.width / (entry.resized_width / stride))

    kept_ids: list[str] = []
    kept_logits: list[torch.Tensor] = []
    kept_regions: list[torch.Tensor] = []
    kept_quality: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, grid.shape[0], batch_size):
            batch = [PromptSpec(f"grid-{start + i}", points=point[None, :], point_labels=[1])
                     for i, point in enumerate(grid[start:start + batch_size])]
            decoded = predictor.decode(entry, batch)
            low = decoded.low_res_logits[:, 0, :valid_h, :valid_w].float()
            quality = mask_scores(low)
            stable = stability_scores(low, offset=stability_offset)
            area = foreground(low).flatten(1).sum(dim=1).float() * cell_area
            keep = (quality >= min_mask_score) & (stable >= stability_threshold) & (area >= min_area)
            rows = torch.nonzero(keep).flatten().tolist()
            if not rows:
                continue
            kept_ids.extend(batch[r].prompt_id for r in rows)
            kept_logits.append(decoded.low_res_logits[rows])
            kept_regions.append(decoded.region_embedding[rows])
            kept_quality.append(quality[rows])
        if not kept_ids:
            return []
        logits = torch.cat(kept_logits)
        quality = torch.cat(kept_quality)
        binary = foreground(logits[:, 0, :valid_h, :valid_w])
        survivors = mask_nms(binary, quality, nms_iou).tolist()
        candidates = DecodedPrompts(
            prompt_ids=[kept_ids[i] for i in survivors],
            low_res_logits=logits[survivors],
            region_embedding=torch.cat(kept_regions)[survivors],
        )
    predictions = predictor.name(entry, candidates, vocabulary, top_k)
    predictions = [p for p in predictions if p.box is not None and p.area >= min_area
                   and p.mask_score >= min_mask_score]
    predictions.sort(key=lambda p: (-p.score, -p.mask_score))
    return predictions[:max_instances]


def find(
    predictor: "OVSAMPredictor",
    queries: Sequence[str] | str,
    key: Hashable | None = None,
    *,
    score_threshold: float = 0.0,
    vocabulary: Vocabulary | None = None,
    max_instances: int = 100,
    **everything_options,
) -> list[InstancePrediction]:
    """Instances of the queried classes ("mug, bottle" or a list of names) in an image.

    Runs segment_everything with the vocabulary (the predictor's, or `vocabulary`) plus the
    queried names it lacks (encoded with the model's text tower, for this call only: the
    predictor's vocabulary is unchanged), and keeps instances whose label is a queried class
    with score >= score_threshold. Queries match vocabulary names ignoring case and '_' vs ' '
    ("tennis racket" finds LVIS's "tennis_racket"). max_instances (default 100) applies after
    that filter. The query is read by ovsam_model.text_query.parse_text_query.
    """
    names = parse_text_query(queries)
    base = predictor.vocabulary_for(vocabulary)
    wanted = [base.spelling(name) or name for name in names]
    missing = [name for name in wanted if name not in base]
    extended = base.extend(missing, predictor.encode_text) if missing else base
    if max_instances < 0:
        raise ValueError(f"max_instances must be 0 or more, got {max_instances}")
    # Every instance, best first (a grid never yields more than sys.maxsize), then the queried ones.
    everything = segment_everything(predictor, key, vocabulary=extended, max_instances=sys.maxsize,
                                    **everything_options)
    wanted_labels = set(wanted)
    found = [p for p in everything if p.label in wanted_labels and p.score >= score_threshold]
    return found[:max_instances]
