"""Losses of the training stages: contrastive (CLIP), point-sampled mask BCE + Dice, weighted CE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def multi_positive_contrastive(image_embeddings: Tensor, text_embeddings: Tensor, image_labels: Tensor,
                               text_labels: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE where every image-caption pair of the same class is a positive.

    Captions of one class are interchangeable, so counting only the diagonal as positive would
    push apart embeddings that should meet."""
    image_embeddings = F.normalize(image_embeddings, dim=-1)
    text_embeddings = F.normalize(text_embeddings, dim=-1)
    logits = logit_scale * image_embeddings @ text_embeddings.t()
    positive = (image_labels[:, None] == text_labels[None, :]).float()

    def direction(lg: Tensor, pos: Tensor) -> Tensor:
        log_prob = lg.log_softmax(dim=1)
        has_positive = pos.sum(1) > 0
        per_row = -(torch.logsumexp(log_prob.masked_fill(pos == 0, float("-inf")), dim=1))
        return per_row[has_positive].mean()

    return 0.5 * (direction(logits, positive) + direction(logits.t(), positive.t()))


def sample_points(logits: Tensor, num_points: int, oversample: float = 3.0, importance: float = 0.75) -> Tensor:
    """Point coordinates in [0, 1] (x, y), [N, num_points, 2]: mostly where the prediction is least
    certain (|logit| small), the rest uniform, as the paper's point-sampled mask losses do."""
    n = logits.shape[0]
    candidates = torch.rand(n, int(num_points * oversample), 2, device=logits.device)
    values = point_sample(logits, candidates)
    num_uncertain = int(num_points * importance)
    index = (-values.abs()).topk(num_uncertain, dim=1).indices
    uncertain = torch.gather(candidates, 1, index[..., None].expand(-1, -1, 2))
    uniform = torch.rand(n, num_points - num_uncertain, 2, device=logits.device)
    return torch.cat([uncertain, uniform], dim=1)


def point_sample(maps: Tensor, points: Tensor, mode: str = "bilinear") -> Tensor:
    """Values of maps [N, 1, H, W] at points [N, P, 2] in [0, 1] (x, y) -> [N, P]."""
    grid = points[:, None] * 2 - 1
    return F.grid_sample(maps, grid, mode=mode, align_corners=False)[:, 0, 0]


def mask_losses(logits: Tensor, targets: Tensor, num_points: int = 1024) -> tuple[Tensor, Tensor]:
    """BCE and Dice between low-resolution mask logits [N, 1, h, w] and full-resolution binary targets
    [N, 1, H, W], both evaluated at the same sampled points (so the logits learn sub-cell edges)."""
    with torch.no_grad():
        points = sample_points(logits.detach(), num_points)
        target_values = point_sample(targets.float(), points, mode="nearest")
    logit_values = point_sample(logits, points)
    bce = F.binary_cross_entropy_with_logits(logit_values, target_values)
    prob = logit_values.sigmoid()
    dice = 1 - (2 * (prob * target_values).sum(1) + 1) / (prob.sum(1) + target_values.sum(1) + 1)
    return bce, dice.mean()


def classification_loss(logits: Tensor, labels: Tensor, background_weight: float = 0.1) -> Tensor:
    """Cross-entropy over K classes + background (last column), background weighted down as in the paper."""
    weight = torch.ones(logits.shape[1], device=logits.device)
    weight[-1] = background_weight
    return F.cross_entropy(logits, labels, weight=weight)
