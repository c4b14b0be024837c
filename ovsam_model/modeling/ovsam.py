"""Open-Vocabulary SAM as one PyTorch module: encode an image once, decode and name many prompts.

Attribute names equal the prefixes of the released checkpoint files (`neck_student`,
`mask_decoder`, `fpn_neck`, `prompt_encoder`) plus `clip` for the open_clip model, so a state
dict of this module is the union of those files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from segment_anything.modeling.prompt_encoder import PromptEncoder
from torch import Tensor, nn
from torchvision.ops import roi_align

from ..config import OVSAMConfig, get_config
from .clip2sam_head import CLIP2SAMHead
from .clip_backbone import attention_pool_grid, build_clip, build_tokenizer, trunk_features
from .foreground import foreground
from .fpn import FPN
from .region_pooling import box_levels, mask_logits_to_boxes
from .sam2clip_adapter import SAM2CLIPAdapter

LOW_RES_MASK_STRIDE = 4


def resize_like_official(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWx3 uint8 resized to (height, width) with PIL's bilinear filter, as the official demo does.

    PIL widens its bilinear kernel when it shrinks (an antialiasing low-pass); OpenCV's INTER_LINEAR
    does not, which changed a quarter of the values of a 600x800 frame by one grey level and up
    to 140 levels on a noisy 1080p frame shrunk to 1024."""
    if image.shape[:2] == (height, width):
        return image
    return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.BILINEAR))


@dataclass
class ImageFeatures:
    """Everything the per-prompt stage needs from one encoded image (or a batch of them)."""

    embedding: Tensor  # [B, prompt_embed_dim, S/16, S/16], SAM-like image embedding
    fpn: tuple[Tensor, ...]  # 4 levels [B, fpn_channels, S/4 .. S/32]
    clip_last: Tensor  # [B, C5, S/32, S/32], CLIP layer4 output (for the optional attention-pool branch)

    def select(self, index: int) -> "ImageFeatures":
        """The features of one image of a batch, still batch-shaped ([1, ...])."""
        return ImageFeatures(
            embedding=self.embedding[index : index + 1],
            fpn=tuple(level[index : index + 1] for level in self.fpn),
            clip_last=self.clip_last[index : index + 1],
        )


@dataclass
class DecoderOutput:
    mask_logits: Tensor  # [N, 1, S/4, S/4]
    region_embedding: Tensor  # [N, text_dim], not normalised
    mask_boxes: Tensor  # [N, 4] x1 y1 x2 y2 in network-input pixels; zeros for an empty mask
    label_embedding: Tensor | None = None  # [N, text_dim] label-token output (unused by the released recognition)


@dataclass
class DecodedMasks:
    """`OVSAM.decode_masks`' result: a `DecoderOutput` but for the region embeddings."""
    mask_logits: Tensor  # [N, 1, S/4, S/4]
    mask_boxes: Tensor  # [N, 4] x1 y1 x2 y2 in network-input pixels; zeros for an empty mask
    label_embedding: Tensor | None  # [N, text_dim]
    image_index: Tensor | None  # [N] each prompt's image in the batch (None: one image)


class OVSAM(nn.Module):
    def __init__(self, config: OVSAMConfig) -> None:
        super().__init__()
        self.config = config
        self.clip = build_clip(config.clip)
        self.neck_student = SAM2CLIPAdapter(
            in_channels=config.backbone_channels,
            strides=config.backbone_strides,
            grid_size=config.embedding_size,
            embed_dim=config.adapter["embed_dim"],
            out_dim=config.prompt_embed_dim,
            depth=config.adapter["depth"],
            num_heads=config.adapter["num_heads"],
            mlp_ratio=config.adapter["mlp_ratio"],
            window_size=config.adapter["window_size"],
            global_attn_indexes=config.adapter["global_attn_indexes"],
        )
        self.prompt_encoder = PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(config.embedding_size, config.embedding_size),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.prompt_mask_in_chans,
        )
        self.mask_decoder = CLIP2SAMHead(
            transformer_dim=config.prompt_embed_dim,
            depth=config.decoder["depth"],
            num_heads=config.decoder["num_heads"],
            mlp_dim=config.decoder["mlp_dim"],
            text_dim=config.text_dim,
            fpn_channels=config.fpn_channels,
        )
        self.fpn_neck = FPN(config.backbone_channels, config.fpn_channels)
        self._tokenizer = build_tokenizer(config.clip)
        # The CLIP model is frozen in OV-SAM: no gradients, BatchNorm statistics never updated.
        for parameter in self.clip.parameters():
            parameter.requires_grad_(False)
        self.register_buffer(
            "pixel_mean", torch.tensor(config.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(config.pixel_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def train(self, mode: bool = True) -> "OVSAM":
        super().train(mode)
        self.clip.train(False)
        return self

    # ----------------------------------------------------------------------------- image side

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of an image of (height, width) after the long side is scaled to the input size.

        Truncated, as the official code does (`int(h * scale)`): rounding gives another height for
        about half of all frame sizes (426x640 -> 681 rows at 1024, not 682) and so another crop
        of the masks afterwards. Never below one pixel (a 2x600 strip would give 0 rows)."""
        scale = self.config.image_size / max(height, width)
        return max(1, int(height * scale)), max(1, int(width * scale))

    def input_scales(self, height: int, width: int) -> tuple[float, float]:
        """Network-input pixels per original pixel along x and along y: the resize `preprocess` does
        (its truncated shape over the original), by which prompts in original pixels are scaled.
        Per axis, because truncation makes the two differ (426x640 at 256: 170/426 and 256/640)."""
        new_height, new_width = self.resized_shape(height, width)
        return new_width / width, new_height / height

    def preprocess(self, image: np.ndarray) -> tuple[Tensor, float]:
        """HxWx3 uint8 RGB -> ([1, 3, S, S] normalised, zero-padded bottom/right), scale = S / max(H, W)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(f"expected an HxWx3 RGB image array, got {type(image).__name__} of shape {shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {image.dtype}; scale it to 0..255 first")
        height, width = image.shape[:2]
        size = self.config.image_size
        scale = size / max(height, width)
        new_height, new_width = self.resized_shape(height, width)
        resized = resize_like_official(image, new_height, new_width)
        pixels = torch.from_numpy(resized).to(self.device).permute(2, 0, 1).unsqueeze(0).float()
        pixels = (pixels - self.pixel_mean) / self.pixel_std
        # Padding after normalisation puts the pad at zero in normalised units, as SAM and mmdet do.
        pixels = F.pad(pixels, (0, size - new_width, 0, size - new_height), value=0.0)
        return pixels, scale

    def encode_image(self, pixels: Tensor) -> ImageFeatures:
        """Backbone, SAM2CLIP adapter and FPN for [B, 3, S, S] preprocessed images."""
        size = self.config.image_size
        if pixels.dim() != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[-2:]) != (size, size):
            raise ValueError(f"expected pixels [B, 3, {size}, {size}] (see preprocess), got {tuple(pixels.shape)}")
        pixels = pixels.to(device=self.device, dtype=self.pixel_mean.dtype)
        trunk_needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.clip.visual.parameters())
        with torch.set_grad_enabled(trunk_needs_grad):
            levels = trunk_features(self.clip.visual, pixels)
        return ImageFeatures(
            embedding=self.neck_student(levels),
            fpn=self.fpn_neck(levels),
            clip_last=levels[-1],
        )

    # ----------------------------------------------------------------------------- prompt side

    def encode_prompts(
        self, points: Tensor | None, point_labels: Tensor | None, boxes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """SAM prompt embeddings (sparse [N, T, C], dense [N, C, h, w]) for N prompts."""
        if points is None and boxes is None:
            raise ValueError("decode needs point prompts, box prompts, or both")
        device = self.device
        point_input = None
        count = None
        if points is not None:
            points = torch.as_tensor(points, dtype=torch.float32, device=device)
            if points.dim() != 3 or points.shape[-1] != 2:
                raise ValueError(f"points must be [N, P, 2] (x, y in network-input pixels), got {tuple(points.shape)}")
            if point_labels is None:
                point_labels = torch.ones(points.shape[:2], device=device)
            point_labels = torch.as_tensor(point_labels, device=device).to(torch.float32)
            if tuple(point_labels.shape) != tuple(points.shape[:2]):
                raise ValueError(
                    f"point_labels must be [N, P] = {tuple(points.shape[:2])} (1 foreground, 0 background, "
                    f"-1 padding), got {tuple(point_labels.shape)}"
                )
            point_input = (points, point_labels)
            count = points.shape[0]
        if boxes is not None:
            boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
            if boxes.dim() != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"boxes must be [N, 4] (x1, y1, x2, y2 in network-input pixels), "
                                 f"got {tuple(boxes.shape)}")
            if count is not None and boxes.shape[0] != count:
                raise ValueError(f"{count} point prompts but {boxes.shape[0]} boxes: "
                                 "a combined prompt needs one box per point set")
        return self.prompt_encoder(points=point_input, boxes=boxes, masks=None)

    def decode(
        self,
        features: ImageFeatures,
        points: Tensor | None = None,
        point_labels: Tensor | None = None,
        boxes: Tensor | None = None,
        image_index: Tensor | None = None,
    ) -> DecoderOutput:
        """Masks and region embeddings for N prompts on one image, or on a batch of images.

        points [N, P, 2] and boxes [N, 4] are in network-input pixels (original pixels x scale);
        point_labels [N, P]: 1 foreground, 0 background, -1 padding. With both, prompt i is
        points[i] together with boxes[i]. With `image_index` [N], prompt i is on image
        image_index[i] of a batch of features; without it the features must be one image's.
        Each prompt's outputs are those of decoding it alone on its image.
        """
        masks = self.decode_masks(features.embedding, points, point_labels, boxes, image_index)
        return DecoderOutput(
            mask_logits=masks.mask_logits,
            region_embedding=self.region_embedding(features.fpn, masks.mask_boxes, masks.image_index),
            mask_boxes=masks.mask_boxes,
            label_embedding=masks.label_embedding,
        )

    def decode_masks(
        self,
        embedding: Tensor,
        points: Tensor | None = None,
        point_labels: Tensor | None = None,
        boxes: Tensor | None = None,
        image_index: Tensor | None = None,
    ) -> DecodedMasks:
        """The mask half of `decode` on image embeddings [B, C, h, w] (`ImageFeatures.embedding`):
        what it needs before the region embeddings, whose FPN levels depend on the masks' boxes."""
        sparse, dense = self.encode_prompts(points, point_labels, boxes)
        batch = embedding.shape[0]
        if image_index is None:
            if batch != 1:
                raise ValueError(
                    f"decode works on one image's features, got a batch of {batch}; "
                    f"use features.select(i) or give each prompt's image_index"
                )
        else:
            image_index = torch.as_tensor(image_index, dtype=torch.long, device=self.device)
            if tuple(image_index.shape) != (sparse.shape[0],):
                raise ValueError(f"image_index must be [N] = [{sparse.shape[0]}] (one image per prompt), "
                                 f"got {tuple(image_index.shape)}")
            if sparse.shape[0] and not 0 <= int(image_index.min()) <= int(image_index.max()) < batch:
                raise ValueError(f"image_index must lie in 0..{batch - 1} (the features' batch), "
                                 f"got {int(image_index.min())}..{int(image_index.max())}")
            embedding = embedding[image_index]
        mask_logits, label_embedding = self.mask_decoder(
            embedding, self.prompt_encoder.get_dense_pe(), sparse, dense
        )
        return DecodedMasks(
            mask_logits=mask_logits,
            mask_boxes=mask_logits_to_boxes(mask_logits, scale=LOW_RES_MASK_STRIDE),
            label_embedding=label_embedding,
            image_index=image_index,
        )

    def region_embedding(self, pyramid: Sequence[Tensor | None], boxes: Tensor,
                         image_index: Tensor | None = None) -> Tensor:
        """Region embeddings [N, text_dim] of boxes [N, 4] (network-input pixels; on image
        `image_index[i]` of the pyramid's batch, default 0), each pooled from the FPN level the
        released level rule gives it. A level of `pyramid` may be None when no box maps to it."""
        return self.mask_decoder.region_embedding(
            pyramid,
            self.config.backbone_strides,
            boxes,
            output_size=self.config.roi_output_size,
            finest_scale=self.config.roi_finest_scale,
            image_index=image_index,
        )

    def finest_level(self, boxes: Tensor) -> int:
        """The finest FPN level any of `boxes` is pooled from (the coarsest level when there are none)."""
        num_levels = len(self.config.backbone_strides)
        if boxes.shape[0] == 0:
            return num_levels - 1
        return int(box_levels(boxes, self.config.roi_finest_scale, num_levels).min())

    def pyramid(self, levels: Sequence[Tensor], first: int = 0) -> list[Tensor | None]:
        """The FPN's outputs from CLIP's levels `first` and up (`levels` starts at level `first`),
        None for the finer ones: all that boxes of level `first` and coarser need. The finest levels
        cost the most and change nothing coarser (see `FPN.forward`)."""
        return [None] * first + list(self.fpn_neck(levels, first=first))

    def postprocess_masks(self, mask_logits: Tensor, original_size: tuple[int, int]) -> Tensor:
        """Low-res logits [N, 1, S/4, S/4] -> logits [N, 1, H, W] over the original image."""
        size = self.config.image_size
        height, width = original_size
        new_height, new_width = self.resized_shape(height, width)
        upscaled = F.interpolate(mask_logits, (size, size), mode="bilinear", align_corners=False)
        upscaled = upscaled[..., :new_height, :new_width]
        return F.interpolate(upscaled, (height, width), mode="bilinear", align_corners=False)

    # ----------------------------------------------------------------------------- recognition

    def classify(self, region_embedding: Tensor, text_embeddings: Tensor, chunk_size: int = 4096) -> Tensor:
        """Logits [N, K+1] of N regions against K classes; the last column is background (logit 0).

        text_embeddings (K, P, D) are unit-norm with P synonyms per class (a (K, D) tensor means
        P = 1); a class scores its best synonym. Classes are processed `chunk_size` at a time so a
        20,000-class vocabulary never builds an N x K x P x D intermediate.
        """
        if text_embeddings.dim() == 2:
            text_embeddings = text_embeddings.unsqueeze(1)
        if text_embeddings.dim() != 3 or text_embeddings.shape[-1] != region_embedding.shape[-1]:
            raise ValueError(
                f"text_embeddings must be (K, P, {region_embedding.shape[-1]}), got {tuple(text_embeddings.shape)}"
            )
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        regions = F.normalize(region_embedding.float(), dim=-1)
        text_embeddings = text_embeddings.to(device=regions.device, dtype=regions.dtype)
        multiplier = float(np.exp(self.config.logit_scale))
        logits = regions.new_empty((regions.shape[0], text_embeddings.shape[0] + 1))
        for start in range(0, text_embeddings.shape[0], chunk_size):
            chunk = text_embeddings[start : start + chunk_size]
            similarity = torch.einsum("nd,kpd->nkp", regions, chunk).amax(dim=-1)
            logits[:, start : start + chunk.shape[0]] = similarity * multiplier
        logits[:, -1] = 0.0
        return logits

    def classify_with_clip_branch(
        self,
        features: ImageFeatures,
        output: DecoderOutput,
        text_embeddings: Tensor,
        base_classes: Tensor | None = None,
        boxes: Tensor | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        chunk_size: int = 4096,
    ) -> Tensor:
        """Log-scores [N, K+1] mixing the region head with CLIP's own attention-pooled crop.

        The paper's evaluation: RoIAlign on CLIP's last stage at the box (the mask's box unless
        `boxes` is given), CLIP's attention pool, then geometric mixing of the two softmaxes,
        q^(1-alpha) c^alpha for base classes (and background), q^(1-beta) c^beta for the rest.
        `base_classes` is a boolean [K] mask (None: every class is novel). Prompts whose mask is
        empty at the CLIP grid keep the head's distribution alone.
        """
        alpha = self.config.clip_branch_alpha if alpha is None else alpha
        beta = self.config.clip_branch_beta if beta is None else beta
        if features.clip_last.shape[0] != 1:
            raise ValueError("classify_with_clip_branch works on one image's features; use features.select(i)")
        head_log_probs = self.classify(output.region_embedding, text_embeddings, chunk_size).log_softmax(-1)

        boxes = output.mask_boxes if boxes is None else torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
        grid = attention_pool_grid(self.clip.visual)
        rois = torch.cat([boxes.new_zeros((boxes.shape[0], 1)), boxes], dim=1).to(features.clip_last.dtype)
        crops = roi_align(
            features.clip_last, rois, output_size=(grid, grid),
            spatial_scale=1.0 / self.config.backbone_strides[-1], sampling_ratio=0, aligned=True,
        )
        clip_embedding = self.clip.visual.attnpool(crops)
        clip_log_probs = self.classify(clip_embedding, text_embeddings, chunk_size).log_softmax(-1)

        num_columns = head_log_probs.shape[-1]
        is_base = torch.zeros(num_columns, dtype=torch.bool, device=head_log_probs.device)
        is_base[-1] = True
        if base_classes is not None:
            base_classes = torch.as_tensor(base_classes, dtype=torch.bool, device=head_log_probs.device)
            if base_classes.shape != (num_columns - 1,):
                raise ValueError(f"base_classes must be a boolean mask of {num_columns - 1} classes, "
                                 f"got {tuple(base_classes.shape)}")
            is_base[:-1] = base_classes
        weight = is_base.to(head_log_probs.dtype) * alpha + (~is_base).to(head_log_probs.dtype) * beta
        mask_at_clip_grid = F.interpolate(
            output.mask_logits, size=features.clip_last.shape[-2:], mode="bilinear", align_corners=False
        )
        has_mask = foreground(mask_at_clip_grid).flatten(1).any(dim=1).to(head_log_probs.dtype)[:, None]
        weight = weight[None, :] * has_mask
        # The geometric mix in log space: no 0 ** x or log(0) for classes a softmax underflows.
        return (1.0 - weight) * head_log_probs + weight * clip_log_probs

    # ----------------------------------------------------------------------------- text side

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        return self._tokenizer(list(texts))

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """CLIP text-tower embeddings [T, text_dim] of `texts`, not normalised."""
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of strings, not a single string")
        tokens = self.tokenize(texts).to(self.device)
        return self.clip.encode_text(tokens, normalize=False)


def build_model(config: OVSAMConfig | str, device: str | torch.device = "cpu") -> OVSAM:
    """An OV-SAM with random weights (load real ones with checkpoint.load_weights), in eval mode."""
    if isinstance(config, str):
        config = get_config(config)
    model = OVSAM(config)
    return model.to(device).eval()
