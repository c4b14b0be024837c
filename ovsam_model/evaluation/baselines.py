"""The paper's two naive baselines, both on the teacher SAM's masks for the same prompts:

- image crop: crop the image around the mask's box, run CLIP's image tower on the crop;
- feature crop: run CLIP's trunk once on the whole image, RoIAlign its last stage at the mask's
  box to CLIP's attention-pool grid, and pool with CLIP's own attention pool.
Both name the region by cosine similarity with the same class text embeddings as OV-SAM. The box of
a mask is its tight box, all zeros for an empty mask, as OV-SAM pools its own (mmdet's mask2bbox):
on an empty mask neither the baselines nor OV-SAM see where the object was."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import roi_align

from ovsam_model.modeling.clip_backbone import attention_pool_grid, trunk_features
from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.synthetic.crops import crop_square


def clip_crop_size(model: OVSAM) -> int:
    """The input size CLIP's image tower was built for (its attention pool's grid x 32)."""
    vision = model.config.clip.get("model_cfg", {}).get("vision_cfg", {})
    return int(vision.get("image_size", 224))


@torch.no_grad()
def image_crop_embeddings(model: OVSAM, image: np.ndarray, boxes: np.ndarray) -> Tensor:
    """CLIP's image-tower embedding [N, D] of a square crop around each box (original pixels)."""
    size = clip_crop_size(model)
    crops = np.stack([crop_square(image, box, size) for box in boxes])
    pixels = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - model.pixel_mean) / model.pixel_std
    return model.clip.encode_image(pixels)


@torch.no_grad()
def image_crop_classes(model: OVSAM, image: np.ndarray, boxes: np.ndarray, text_embeddings: Tensor) -> np.ndarray:
    """Top-1 class per box (original pixels) of CLIP's image tower on a square crop around the box."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    embedding = image_crop_embeddings(model, image, boxes)
    return model.classify(embedding, text_embeddings)[:, :-1].argmax(1).numpy()


@torch.no_grad()
def clip_last_stage(model: OVSAM, pixels: Tensor) -> Tensor:
    """CLIP's last-stage features [1, C, S/32, S/32] of a preprocessed image."""
    return trunk_features(model.clip.visual, pixels)[-1]


@torch.no_grad()
def feature_crop_classes(model: OVSAM, clip_last: Tensor, boxes: Tensor, text_embeddings: Tensor) -> np.ndarray:
    """Top-1 class per box (network-input pixels) of CLIP's attention pool over the box's RoIAlign
    of the whole image's last-stage features."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    grid = attention_pool_grid(model.clip.visual)
    rois = torch.cat([boxes.new_zeros((len(boxes), 1)), boxes.float()], dim=1)
    pooled = roi_align(clip_last, rois, output_size=(grid, grid),
                       spatial_scale=1.0 / model.config.backbone_strides[-1], sampling_ratio=0, aligned=True)
    embedding = model.clip.visual.attnpool(pooled)
    return model.classify(embedding, text_embeddings)[:, :-1].argmax(1).numpy()
