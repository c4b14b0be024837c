"""Stage (a): a small CLIP trained contrastively on object crops and captions of base classes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ovsam_model.modeling.clip_backbone import build_clip, build_tokenizer
from ovsam_model.config import OVSAMConfig
from ovsam_model.synthetic.classes import BASE_INDICES, CLASS_NAMES
from ovsam_model.synthetic.crops import CropSet, caption, object_crops
from ovsam_model.synthetic.scenes import SceneSet
from ovsam_model.training.common import StageRun, seed_everything, train_loop
from ovsam_model.training.data import CROPS_STREAM, augment, normalise
from ovsam_model.training.losses import multi_positive_contrastive


@dataclass
class ClipStageSettings:
    steps: int = 1500
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    crop_variants: int = 2


def crop_size(config: OVSAMConfig) -> int:
    return int(config.clip["model_cfg"]["vision_cfg"]["image_size"])


def cached_crops(data_dir: Path, scenes: SceneSet, config: OVSAMConfig, seed: int, variants: int) -> CropSet:
    path = data_dir / f"crops_seed{seed}_n{len(scenes)}_s{crop_size(config)}_v{variants}.npz"
    if path.is_file():
        with np.load(path) as data:
            return CropSet(data["images"], data["labels"])
    crops = object_crops(scenes, crop_size(config), seed=hash((seed, CROPS_STREAM)) % 2**32, variants=variants,
                         classes=BASE_INDICES)
    np.savez(path, images=crops.images, labels=crops.labels)
    return crops


def _crop_tensor(images: np.ndarray, config: OVSAMConfig) -> torch.Tensor:
    # The crops keep their own size: the CLIP tower is fully convolutional up to its attention pool.
    return normalise(images, config.replace(image_size=images.shape[1]))


def clip_loss(clip: torch.nn.Module, tokenizer, config: OVSAMConfig, images: np.ndarray, labels: np.ndarray,
              rng: np.random.Generator) -> torch.Tensor:
    """Contrastive loss of a batch of crops against one caption (random template) per base class,
    so every base class is a candidate in every step."""
    images, _ = augment(images, np.zeros(images.shape[:3], np.uint8), rng)
    base = np.asarray(BASE_INDICES)
    captions = [caption(int(c), rng) for c in base]
    image_features = clip.encode_image(_crop_tensor(images, config))
    text_features = clip.encode_text(tokenizer(captions))
    return multi_positive_contrastive(image_features, text_features, torch.from_numpy(labels), torch.from_numpy(base),
                                      clip.logit_scale.exp().clamp(max=100))


def train_clip(config: OVSAMConfig, scenes: SceneSet, run: StageRun, data_dir: Path, seed: int,
               settings: ClipStageSettings) -> dict[str, Any]:
    seed_everything(seed)
    crops = cached_crops(data_dir, scenes, config, seed, settings.crop_variants)
    clip = build_clip(config.clip)
    clip.train()
    tokenizer = build_tokenizer(config.clip)
    optimizer = torch.optim.AdamW(clip.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng((seed, 3))

    def step(i: int) -> dict[str, float]:
        index = rng.integers(len(crops.labels), size=settings.batch_size)
        loss = clip_loss(clip, tokenizer, config, crops.images[index], crops.labels[index], rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"contrastive": loss.item()}

    log = train_loop(run, "clip", settings.steps, {"clip": clip}, optimizer, settings.lr, step,
                     data_rng=rng)
    clip.eval()
    log["crop_accuracy"] = crop_accuracy(clip, tokenizer, crops, config)
    run.save_final({"clip": clip.state_dict()}, log)
    return log


@torch.no_grad()
def crop_accuracy(clip: torch.nn.Module, tokenizer, crops: CropSet, config: OVSAMConfig, limit: int = 2000) -> float:
    """Top-1 over the 42 classes on (training) crops: a sanity figure, not the evaluation."""
    from ovsam_model.vocabulary import encode_class_names
    text = encode_class_names(lambda s: clip.encode_text(tokenizer(s)), list(CLASS_NAMES), progress=False)[:, 0]
    images = _crop_tensor(crops.images[:limit], config)
    features = torch.nn.functional.normalize(clip.encode_image(images), dim=-1)
    predicted = (features @ text.t()).argmax(1).numpy()
    return float((predicted == crops.labels[:limit]).mean())
