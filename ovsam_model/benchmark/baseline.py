"""The paper's baseline for the benchmark: SAM segments, then CLIP names each mask's crop.

Meta's `segment_anything` (SamPredictor: resize, ViT image encoder, prompt encoder, mask decoder,
masks at the original resolution) followed by CLIP's image tower on every mask's box crop, and the
same cosine matching against the vocabulary that OV-SAM uses. Random weights: speed does not
depend on them.

Kinds:
- "vit_h": SAM ViT-H (1024 input) + CLIP RN50x16 (384 crops): the comparison the paper makes.
- "miniature": a two-block ViT SAM and the compared model's own small CLIP, at that model's input
  size. It exercises the same code in seconds for CI; its ratio is not the paper's comparison.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch import Tensor

from ovsam_model.mask_box import tight_box

BASELINE_KINDS = ("vit_h", "miniature")
CLIP_CROP_BATCH = 16  # crops per CLIP forward pass: bounds memory at 50 prompts
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Baseline:
    kind: str
    description: str
    predictor: Any  # segment_anything.SamPredictor
    clip_visual: torch.nn.Module
    crop_size: int
    device: torch.device
    embed_dim: int

    def encode(self, frame: np.ndarray) -> None:
        self.predictor.set_image(frame)

    def segment(self, points: np.ndarray, frame_hw: tuple[int, int]) -> Tensor:
        """Masks [N, H, W] (bool, original resolution) for N single foreground points (frame pixels)."""
        coords = torch.as_tensor(points, dtype=torch.float32, device=self.device)[:, None, :]
        coords = self.predictor.transform.apply_coords_torch(coords, frame_hw)
        labels = torch.ones(coords.shape[:2], dtype=torch.int64, device=self.device)
        masks, _, _ = self.predictor.predict_torch(coords, labels, multimask_output=False)
        return masks[:, 0]

    @torch.no_grad()
    def embed_crops(self, frame: np.ndarray, masks: Tensor) -> Tensor:
        """CLIP image embeddings [N, D] of each mask's box crop (the whole frame for an empty mask)."""
        crops = [_crop(frame, mask, self.crop_size) for mask in masks.cpu().numpy()]
        batch = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(OPENAI_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_STD, device=self.device).view(1, 3, 1, 1)
        batch = (batch - mean) / std
        return torch.cat([self.clip_visual(chunk) for chunk in batch.split(CLIP_CROP_BATCH)])


def _crop(frame: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    box = tight_box(mask)
    if box is not None:
        x0, y0, x1, y1 = box
        frame = frame[y0:y1, x0:x1]
    return cv2.resize(np.ascontiguousarray(frame), (size, size), interpolation=cv2.INTER_CUBIC)


def build_baseline(kind: str, device: torch.device, compared_config: Any = None) -> Baseline:
    """A baseline with random weights on `device`; "miniature" needs the compared model's config."""
    from segment_anything import SamPredictor, sam_model_registry
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from ovsam_model.modeling.clip_backbone import build_clip

    if kind == "vit_h":
        import open_clip

        sam = sam_model_registry["vit_h"](checkpoint=None)
        clip = open_clip.create_model("RN50x16", pretrained=None, force_quick_gelu=True)
        description = "segment_anything ViT-H (1024) + CLIP RN50x16 on each mask's crop (384)"
    elif kind == "miniature":
        if compared_config is None:
            raise ValueError("the miniature baseline is sized after a model configuration; pass compared_config")
        size, width = compared_config.image_size, 64
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=size, patch_size=16, embed_dim=width, depth=2, num_heads=2, mlp_ratio=4,
                out_chans=width, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True, window_size=0, global_attn_indexes=(0, 1)),
            prompt_encoder=PromptEncoder(embed_dim=width, image_embedding_size=(size // 16, size // 16),
                                         input_image_size=(size, size), mask_in_chans=4),
            mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
                depth=2, embedding_dim=width, mlp_dim=2 * width, num_heads=2), transformer_dim=width,
                iou_head_depth=3, iou_head_hidden_dim=width),
            pixel_mean=list(compared_config.pixel_mean), pixel_std=list(compared_config.pixel_std))
        clip = build_clip(compared_config.clip)
        description = f"miniature SAM (2-block ViT-{width}, {size}) + {compared_config.name}'s CLIP on crops (CI only)"
    else:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINE_KINDS)}")
    sam = sam.to(device).eval()
    visual = clip.visual.to(device).eval()
    crop_size = int(getattr(visual, "image_size", 224))
    embed_dim = int(visual.output_dim)
    return Baseline(kind, description, SamPredictor(sam), visual, crop_size, torch.device(device), embed_dim)


def time_baseline(baseline: Baseline, frame: np.ndarray, points_by_count: dict[int, np.ndarray],
                  vocabulary: Tensor, classify: Callable[[Tensor, Tensor], Tensor], stopwatch: Any,
                  repeats: int, warmup: int) -> None:
    """Time a whole frame per prompt count: sam_encode, sam_decode_N, clip_crops_N, recognition_N."""
    frame_hw = (frame.shape[0], frame.shape[1])
    for iteration in range(warmup + repeats):
        record = iteration >= warmup
        stopwatch.measure("sam_encode", lambda: baseline.encode(frame), record)
        for count, points in points_by_count.items():
            masks = stopwatch.measure(f"sam_decode_{count}", lambda: baseline.segment(points, frame_hw), record)
            embeddings = stopwatch.measure(f"clip_crops_{count}", lambda: baseline.embed_crops(frame, masks), record)
            stopwatch.measure(f"recognition_{count}", lambda: classify(embeddings, vocabulary), record)
