"""CLIP2SAM: SAM's two-way mask decoder plus the recognition parts OV-SAM adds to it.

The released decoder file nests SAM's MaskDecoder inside the head (`mask_decoder.mask_decoder.*`)
but without SAM's IoU token and IoU head and with a single mask token, so `PromptMaskDecoder`
reproduces SAM's attribute names for exactly the parts that exist. The head adds a label token
and its MLP (trained, but multiplied by zero in the released recognition path) and the RoI
projection `roi_conv` that turns pooled FPN features into CLIP-text-space region embeddings.
"""
from __future__ import annotations

from typing import Sequence

import torch
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from segment_anything.modeling.transformer import TwoWayTransformer
from torch import Tensor, nn

from .conv_unit import ConvUnit
from .region_pooling import pool_regions


class PromptMaskDecoder(nn.Module):
    """SAM's MaskDecoder layout with no IoU prediction: transformer, mask tokens, upscaling, hypernetworks."""

    def __init__(self, transformer_dim: int, depth: int, num_heads: int, mlp_dim: int,
                 num_mask_tokens: int = 1) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = TwoWayTransformer(
            depth=depth, embedding_dim=transformer_dim, num_heads=num_heads, mlp_dim=mlp_dim
        )
        self.num_mask_tokens = num_mask_tokens
        self.mask_tokens = nn.Embedding(num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(num_mask_tokens)
        )

    def masks_from_tokens(self, mask_token_outputs: Tensor, image_tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """Mask logits [N, num_mask_tokens, 4h, 4w] from the transformer's outputs."""
        num_prompts, _, channels = image_tokens.shape
        features = image_tokens.transpose(1, 2).reshape(num_prompts, channels, grid[0], grid[1])
        features = self.output_upscaling(features)
        weights = torch.stack(
            [mlp(mask_token_outputs[:, index]) for index, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        n, c, h, w = features.shape
        return (weights @ features.reshape(n, c, h * w)).reshape(n, -1, h, w)


class CLIP2SAMHead(nn.Module):
    def __init__(
        self,
        transformer_dim: int,
        depth: int,
        num_heads: int,
        mlp_dim: int,
        text_dim: int,
        fpn_channels: int,
    ) -> None:
        super().__init__()
        self.mask_decoder = PromptMaskDecoder(transformer_dim, depth, num_heads, mlp_dim)
        self.label_token = nn.Embedding(1, transformer_dim)
        self.label_mlp = MLP(transformer_dim, transformer_dim, text_dim, 3)
        # A Sequential of one ConvModule-like unit, so the key is `roi_conv.0.conv.weight`.
        self.roi_conv = nn.Sequential(ConvUnit(fpn_channels, text_dim, 1, bias=False, relu=True))

    def forward(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Mask logits [N, 1, 4h, 4w] and the label token's embedding [N, text_dim] for N prompts.

        `image_pe` is [1, C, h, w]; `image_embedding` is one image's ([1, C, h, w]) or each prompt's
        own ([N, C, h, w], for prompts on several images)."""
        num_prompts = sparse_prompt_embeddings.shape[0]
        # Token order matters for the trained weights: label token, mask tokens, then prompts.
        output_tokens = torch.cat([self.label_token.weight, self.mask_decoder.mask_tokens.weight], dim=0)
        queries = torch.cat(
            [output_tokens.unsqueeze(0).expand(num_prompts, -1, -1), sparse_prompt_embeddings], dim=1
        )
        keys = image_embedding.expand(num_prompts, -1, -1, -1) + dense_prompt_embeddings
        grid = (keys.shape[-2], keys.shape[-1])
        # A batch-1 positional map broadcasts inside SAM's attention; no need to copy it N times.
        token_outputs, image_tokens = self.mask_decoder.transformer(keys, image_pe, queries)
        label_output = token_outputs[:, 0]
        mask_token_outputs = token_outputs[:, 1 : 1 + self.mask_decoder.num_mask_tokens]
        mask_logits = self.mask_decoder.masks_from_tokens(mask_token_outputs, image_tokens, grid)
        return mask_logits, self.label_mlp(label_output)

    def region_embedding(
        self,
        pyramid: Sequence[Tensor | None],
        strides: Sequence[int],
        boxes: Tensor,
        output_size: int,
        finest_scale: float,
        image_index: Tensor | None = None,
    ) -> Tensor:
        """Region embeddings [N, text_dim]: RoIAlign on the FPN, roi_conv, spatial mean (see `pool_regions`)."""
        pooled = pool_regions(pyramid, strides, boxes, output_size, finest_scale, image_index)
        return self.roi_conv(pooled).mean(dim=(-2, -1))
