"""CLIP's trunk features of many images, computed once: after its own stage CLIP is frozen, so the
stages that read its features of the same images again and again can keep them instead."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from ovsam_model.modeling.clip_backbone import trunk_features
from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.training.data import normalise


@torch.no_grad()
def cache_trunk_levels(model: OVSAM, batches: Iterable[np.ndarray], total: int, first_level: int = 0) -> list[Tensor]:
    """CLIP's levels from `first_level` up of the `total` images that `batches` yields (uint8
    [B, H, W, 3] at the render size, in order): one float16 tensor [total, C, h, w] per level."""
    # The features go into tensors allocated once, and nothing else that lasts is allocated between
    # batches: small lasting allocations between the trunk's large passing ones fragment glibc's heap
    # (a process held 12.7 GB for 2.1 GB of features when the caller gathered its boxes meanwhile).
    kept: list[Tensor] = []
    position = 0
    for images in batches:
        if position + len(images) > total:
            raise ValueError(f"expected {total} images, the batches hold more")
        levels = trunk_features(model.clip.visual, normalise(images, model.config))[first_level:]
        if not kept:
            kept = [torch.empty((total, *level.shape[1:]), dtype=torch.float16) for level in levels]
        for store, level in zip(kept, levels):
            store[position: position + len(images)] = level
        position += len(images)
    if position != total:
        raise ValueError(f"expected {total} images, the batches held {position}")
    return kept
