"""SAM2CLIP: turns the CLIP CNN's four feature levels into a SAM-like image embedding.

Each level is projected to the transformer width at stride 16, tagged with a learned level
embedding, summed, given SAM's absolute position table, refined by SAM ViT blocks (windowed with
relative positions, one global) and squeezed by SAM's neck to the prompt-embedding width. It was
distilled to reproduce SAM ViT-H's embedding, which is why its pieces are SAM's.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Block
from torch import Tensor, nn

EMBEDDING_STRIDE = 16


class LevelProjection(nn.Module):
    """One level to stride 16: a strided conv from finer levels, a transposed conv from coarser ones."""

    def __init__(self, in_channels: int, embed_dim: int, level_stride: int) -> None:
        super().__init__()
        if level_stride <= EMBEDDING_STRIDE:
            if EMBEDDING_STRIDE % level_stride:
                raise ValueError(f"level stride {level_stride} does not divide {EMBEDDING_STRIDE}")
            factor = EMBEDDING_STRIDE // level_stride
            self.projection: nn.Module = nn.Conv2d(in_channels, embed_dim, kernel_size=factor, stride=factor)
        else:
            if level_stride % EMBEDDING_STRIDE:
                raise ValueError(f"level stride {level_stride} is not a multiple of {EMBEDDING_STRIDE}")
            factor = level_stride // EMBEDDING_STRIDE
            self.projection = nn.ConvTranspose2d(in_channels, embed_dim, kernel_size=factor, stride=factor)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x).permute(0, 2, 3, 1)  # channels-last, as SAM's blocks expect


class SAM2CLIPAdapter(nn.Module):
    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        grid_size: int,
        embed_dim: int,
        out_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        global_attn_indexes: Sequence[int],
    ) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.patch_embeds = nn.ModuleList(
            LevelProjection(channels, embed_dim, stride) for channels, stride in zip(in_channels, strides)
        )
        self.level_encoding = nn.Embedding(len(in_channels), embed_dim)
        # SAM ViT's absolute position table, saved with the adapter, hence persistent.
        self.register_buffer("pos_embed", torch.zeros(1, grid_size, grid_size, embed_dim), persistent=True)
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=True,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                act_layer=nn.GELU,
                use_rel_pos=True,
                rel_pos_zero_init=True,
                window_size=0 if index in global_attn_indexes else window_size,
                input_size=(grid_size, grid_size),
            )
            for index in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_dim, kernel_size=1, bias=False),
            LayerNorm2d(out_dim),
            nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_dim),
        )

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        if len(levels) != len(self.patch_embeds):
            raise ValueError(f"expected {len(self.patch_embeds)} feature levels, got {len(levels)}")
        x = None
        for index, (projection, level) in enumerate(zip(self.patch_embeds, levels)):
            tokens = projection(level) + self.level_encoding.weight[index]
            x = tokens if x is None else x + tokens
        if x.shape[1:3] != self.pos_embed.shape[1:3]:
            raise ValueError(
                f"adapter grid {tuple(x.shape[1:3])} does not match its position table "
                f"{tuple(self.pos_embed.shape[1:3])}: the input image size differs from the configuration's"
            )
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
