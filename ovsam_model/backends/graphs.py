"""OV-SAM's two halves as plain modules with tensor-only inputs and outputs, for ONNX export and
torch.compile.

`ImageGraph` is the fixed-shape image part. `PromptGraph` is the per-prompt part for one token
layout, written without data-dependent indexing so that one graph serves any number of prompts:
- SAM's prompt encoder assigns token embeddings by boolean indexing on the labels; here the same
  sums are made with `where` and label masks.
- The released model pools each prompt's region from the one FPN level its mask box maps to. Here
  every level runs RoIAlign on all boxes, but a box is collapsed to zero size on the levels it does
  not belong to: RoIAlign (aligned, adaptive sampling) samples nothing in an empty box and returns
  zeros, so the sum over levels is the right level's features and costs about one RoIAlign per box.
- Integer index tensors are avoided (TensorRT's int64 support is partial); levels stay float.
The parity tests hold these graphs to OVSAM.decode.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from ovsam_model.modeling.clip_backbone import trunk_features
from ovsam_model.modeling.foreground import FOREGROUND_LOGIT
from ovsam_model.modeling.ovsam import LOW_RES_MASK_STRIDE, OVSAM

from .base import LAYOUT_BOX, LAYOUT_POINTS, LAYOUT_POINTS_BOX, PROMPT_LAYOUTS

IMAGE_OUTPUTS = ("embedding", "fpn0", "fpn1", "fpn2", "fpn3", "clip_last")
PROMPT_OUTPUTS = ("mask_logits", "region_embedding", "mask_boxes")


def prompt_input_names(layout: str) -> tuple[str, ...]:
    features = ("embedding", "fpn0", "fpn1", "fpn2", "fpn3")
    if layout == LAYOUT_POINTS:
        return features + ("points", "labels")
    if layout == LAYOUT_BOX:
        return features + ("boxes",)
    if layout == LAYOUT_POINTS_BOX:
        return features + ("points", "labels", "boxes")
    raise ValueError(f"unknown prompt layout {layout!r}; known: {', '.join(PROMPT_LAYOUTS)}")


class ImageGraph(nn.Module):
    """pixels [B, 3, S, S] -> embedding, fpn0..fpn3, clip_last (the order of IMAGE_OUTPUTS)."""

    def __init__(self, model: OVSAM) -> None:
        super().__init__()
        self.visual = model.clip.visual
        self.neck_student = model.neck_student
        self.fpn_neck = model.fpn_neck

    def forward(self, pixels: Tensor) -> tuple[Tensor, ...]:
        levels = trunk_features(self.visual, pixels)
        pyramid = self.fpn_neck(levels)
        return (self.neck_student(levels), *pyramid, levels[-1])


class PromptGraph(nn.Module):
    """One image's features and N prompts of one layout -> mask_logits, region_embedding, mask_boxes."""

    def __init__(self, model: OVSAM, layout: str) -> None:
        super().__init__()
        prompt_input_names(layout)  # validates the layout
        config = model.config
        self.layout = layout
        self.image_size = float(config.image_size)
        self.strides = tuple(float(s) for s in config.backbone_strides)
        self.finest_scale = float(config.roi_finest_scale)
        self.roi_output_size = int(config.roi_output_size)
        encoder = model.prompt_encoder
        self.pe_layer = encoder.pe_layer
        self.not_a_point = encoder.not_a_point_embed
        self.point_embeddings = encoder.point_embeddings
        self.no_mask = encoder.no_mask_embed
        self.head = model.mask_decoder
        # The dense positional map depends only on the grid: computed once, stored as a constant.
        with torch.no_grad():
            self.register_buffer("image_pe", encoder.get_dense_pe().clone(), persistent=False)

    def forward(self, embedding: Tensor, fpn0: Tensor, fpn1: Tensor, fpn2: Tensor, fpn3: Tensor,
                *prompts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        tokens = self._prompt_tokens(*prompts)
        dense = self.no_mask.weight.reshape(1, -1, 1, 1)
        mask_logits, _ = self.head(embedding, self.image_pe, tokens, dense)
        boxes = self._mask_boxes(mask_logits)
        pooled = self._pool(boxes, (fpn0, fpn1, fpn2, fpn3))
        region_embedding = self.head.roi_conv(pooled).mean(dim=(-2, -1))
        return mask_logits, region_embedding, boxes

    # -- prompt tokens, as SAM's PromptEncoder without masks --------------------------------------
    def _encode_coords(self, coords: Tensor) -> Tensor:
        # +0.5: SAM shifts coordinates to pixel centres; then normalise by the square input.
        return self.pe_layer._pe_encoding((coords + 0.5) / self.image_size)

    def _point_tokens(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        if pad:
            points = torch.cat([points, torch.zeros_like(points[:, :1])], dim=1)
            labels = torch.cat([labels, torch.full_like(labels[:, :1], -1.0)], dim=1)
        encoded = self._encode_coords(points)
        labels = labels.unsqueeze(-1)
        tokens = torch.where(labels == -1.0, self.not_a_point.weight, encoded)
        background = (labels == 0.0).to(tokens.dtype) * self.point_embeddings[0].weight
        foreground = (labels == 1.0).to(tokens.dtype) * self.point_embeddings[1].weight
        return tokens + background + foreground

    def _box_tokens(self, boxes: Tensor) -> Tensor:
        corners = self._encode_coords(boxes.reshape(-1, 2, 2))
        corner_types = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return corners + corner_types

    def _prompt_tokens(self, *prompts: Tensor) -> Tensor:
        if self.layout == LAYOUT_POINTS:
            points, labels = prompts
            return self._point_tokens(points, labels, pad=True)
        if self.layout == LAYOUT_BOX:
            (boxes,) = prompts
            return self._box_tokens(boxes)
        points, labels, boxes = prompts
        return torch.cat([self._point_tokens(points, labels, pad=False), self._box_tokens(boxes)], dim=1)

    # -- recognition -----------------------------------------------------------------------------
    @staticmethod
    def _mask_boxes(mask_logits: Tensor) -> Tensor:
        """Tight boxes of the foreground (FOREGROUND_LOGIT, as region_pooling) in input pixels (x2/y2
        one past the end); zeros when empty. Written without boolean indexing, which ONNX lacks."""
        foreground = mask_logits[:, 0] > FOREGROUND_LOGIT
        columns = foreground.any(dim=1)
        rows = foreground.any(dim=2)
        width, height = columns.shape[1], rows.shape[1]
        x_index = torch.arange(width, dtype=torch.float32, device=mask_logits.device)
        y_index = torch.arange(height, dtype=torch.float32, device=mask_logits.device)
        x1 = torch.where(columns, x_index, float(width)).amin(dim=1)
        x2 = torch.where(columns, x_index, -1.0).amax(dim=1) + 1.0
        y1 = torch.where(rows, y_index, float(height)).amin(dim=1)
        y2 = torch.where(rows, y_index, -1.0).amax(dim=1) + 1.0
        boxes = torch.stack([x1, y1, x2, y2], dim=1) * float(LOW_RES_MASK_STRIDE)
        found = columns.any(dim=1, keepdim=True)
        return torch.where(found, boxes, torch.zeros_like(boxes))

    def _levels(self, boxes: Tensor) -> Tensor:
        # mmdet's rule, as region_pooling.box_levels, kept in floating point.
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        levels = torch.floor(torch.log(torch.sqrt(area) / self.finest_scale + 1e-6) / math.log(2.0))
        return levels.clamp(min=0.0, max=float(len(self.strides) - 1))

    def _pool(self, boxes: Tensor, pyramid: tuple[Tensor, ...]) -> Tensor:
        levels = self._levels(boxes).unsqueeze(1)
        batch_index = torch.zeros_like(boxes[:, :1])
        pooled = None
        for level, (features, stride) in enumerate(zip(pyramid, self.strides)):
            level_boxes = torch.where(levels == float(level), boxes, torch.zeros_like(boxes))
            rois = torch.cat([batch_index, level_boxes], dim=1).to(features.dtype)
            crops = roi_align(features, rois, output_size=(self.roi_output_size, self.roi_output_size),
                              spatial_scale=1.0 / stride, sampling_ratio=0, aligned=True)
            pooled = crops if pooled is None else pooled + crops
        return pooled
