"""Stage (a): a small CLIP trained contrastively on image-text pairs of base classes.

By default image-level, as the real CLIP was trained: random resized crops of whole scenes with
alt-text captions naming the objects shown (synthetic/scene_captions.py). The earlier recipe,
object crops with one caption per object (region-level supervision, which the paper's CLIP never
had and which hands the crop baselines exactly what they need), is kept as `data="object_crops"`
for comparison."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ovsam_model.config import OVSAMConfig
from ovsam_model.modeling.clip_backbone import build_clip, build_tokenizer
from ovsam_model.synthetic.classes import BASE_INDICES, CLASS_NAMES
from ovsam_model.synthetic.crops import CropSet, caption, object_crops
from ovsam_model.synthetic.scene_captions import scene_caption, scene_crop
from ovsam_model.synthetic.scenes import SceneSet
from ovsam_model.training.common import StageRun, ThreadSchedule, seed_everything, train_loop
from ovsam_model.training.data import CROPS_STREAM, augment, normalise
from ovsam_model.training.losses import multi_positive_contrastive
from ovsam_model.training.precision import AUTO, forward_precision, resolve_precision

SCENE_LEVEL, OBJECT_CROPS = "scenes", "object_crops"


@dataclass
class ClipStageSettings:
    # At the configured 128x128 (the tower's image_size) objects appear at 18-100 px, about the size
    # they have in the model's 256 input; at 64x64 they were 9-50 px and the tower learned shape
    # poorly (52 % right on single-object crops). 128 px costs 4x per image. 2,400 steps of 128
    # images are the run's critical path: 25 min in bf16 (one core beside the teacher, then two) of
    # the shipped run's 38 min 34 s, 30.5 of 43 min 46 s in float32; 2,000 steps of the same tower
    # named novel crops 0.38 against 0.49 and OV-SAM's novel accuracy was 0.63 against 0.67; 3,200
    # bf16 steps lift base accuracy and the crop baselines more (docs/model-card-ovsam-shapes.md,
    # "What was tried").
    steps: int = 2400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    # "scenes": image-level pairs (whole-scene random resized crops, alt-text captions);
    # "object_crops": one crop and one caption per object (the earlier, region-level recipe).
    data: str = SCENE_LEVEL
    # Share of the scene's area a random resized crop keeps (torchvision's RandomResizedCrop scale).
    scene_crop_area: tuple[float, float] = (0.25, 1.0)
    crop_variants: int = 2  # object crops per object (data="object_crops" only)
    # "auto": bf16 on a CPU with bfloat16 instructions, where its steps cost ~0.75 of fp32 ones and
    # learn as much (what keeps the run inside 45 minutes on the development VM's slow hours); fp32
    # elsewhere, where autocast would emulate bf16 at 8-10x the cost (training/precision.py).
    precision: str = AUTO


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


def _encode_pairs(clip: torch.nn.Module, tokenizer, config: OVSAMConfig, images: np.ndarray, captions: list[str],
                  precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text embeddings in float32, whatever precision the towers ran in."""
    with forward_precision(precision):
        image_features = clip.encode_image(_crop_tensor(images, config))
        text_features = clip.encode_text(tokenizer(captions))
    return image_features.float(), text_features.float()


def clip_loss(clip: torch.nn.Module, tokenizer, config: OVSAMConfig, images: np.ndarray, labels: np.ndarray,
              rng: np.random.Generator, precision: str = "fp32") -> torch.Tensor:
    """Contrastive loss of a batch of crops against one caption (random template) per base class,
    so every base class is a candidate in every step."""
    images, _ = augment(images, np.zeros(images.shape[:3], np.uint8), rng)
    base = np.asarray(BASE_INDICES)
    captions = [caption(int(c), rng) for c in base]
    image_features, text_features = _encode_pairs(clip, tokenizer, config, images, captions, precision)
    return multi_positive_contrastive(image_features, text_features, torch.from_numpy(labels), torch.from_numpy(base),
                                      clip.logit_scale.exp().clamp(max=100))


def scene_clip_loss(clip: torch.nn.Module, tokenizer, config: OVSAMConfig, scenes: SceneSet, index: np.ndarray,
                    rng: np.random.Generator, area_range: tuple[float, float], precision: str = "fp32") -> torch.Tensor:
    """Contrastive loss of random resized crops of the scenes `index` against their alt-text captions;
    images whose captions name the same classes are positives of each other."""
    size = crop_size(config)
    max_tokens = int(config.clip["model_cfg"]["text_cfg"]["context_length"]) - 2  # start and end tokens
    crops, captions, named_sets = [], [], []
    for scene_index in index:
        labels = scenes.labels[scene_index]
        crop, shown = scene_crop(scenes.images[scene_index], scenes.instance_maps[scene_index], labels[labels >= 0],
                                 rng, size, area_range)
        text, named = scene_caption(shown, rng, _token_counter(tokenizer), max_tokens)
        crops.append(crop)
        captions.append(text)
        named_sets.append(named)
    images, _ = augment(np.stack(crops), np.zeros((len(crops), size, size), np.uint8), rng)
    keys = {named: i for i, named in enumerate(dict.fromkeys(named_sets))}
    caption_ids = torch.tensor([keys[named] for named in named_sets])
    image_features, text_features = _encode_pairs(clip, tokenizer, config, images, captions, precision)
    return multi_positive_contrastive(image_features, text_features, caption_ids, caption_ids,
                                      clip.logit_scale.exp().clamp(max=100))


_TOKEN_COUNTERS: dict[int, Any] = {}


def _token_counter(tokenizer) -> Any:
    """len(BPE tokens) of a text, memoised per tokenizer (captions repeat often)."""
    counter = _TOKEN_COUNTERS.get(id(tokenizer))
    if counter is None:
        from functools import lru_cache
        counter = lru_cache(maxsize=65536)(lambda text: len(tokenizer.encode(text)))
        _TOKEN_COUNTERS[id(tokenizer)] = counter
    return counter


def train_clip(config: OVSAMConfig, scenes: SceneSet, run: StageRun, data_dir: Path, seed: int,
               settings: ClipStageSettings, threads: ThreadSchedule | None = None) -> dict[str, Any]:
    """Trains the CLIP model (see the module's docstring); `threads`: see `train_loop`."""
    if settings.data not in (SCENE_LEVEL, OBJECT_CROPS):
        raise ValueError(f"ClipStageSettings.data must be {SCENE_LEVEL!r} or {OBJECT_CROPS!r}, got {settings.data!r}")
    precision = resolve_precision(settings.precision)
    seed_everything(seed)
    # Object crops are made either way: the training recipe's data (object_crops) or a sanity figure.
    crops = cached_crops(data_dir, scenes, config, seed, settings.crop_variants) if settings.data == OBJECT_CROPS \
        else object_crops(scenes.subset(range(min(len(scenes), 300))), crop_size(config), seed=seed, variants=1,
                          classes=BASE_INDICES)
    clip = build_clip(config.clip)
    clip.train()
    tokenizer = build_tokenizer(config.clip)
    optimizer = torch.optim.AdamW(clip.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng((seed, 3))

    def step(i: int) -> dict[str, float]:
        if settings.data == SCENE_LEVEL:
            index = rng.integers(len(scenes), size=settings.batch_size)
            loss = scene_clip_loss(clip, tokenizer, config, scenes, index, rng, settings.scene_crop_area,
                                   precision)
        else:
            index = rng.integers(len(crops.labels), size=settings.batch_size)
            loss = clip_loss(clip, tokenizer, config, crops.images[index], crops.labels[index], rng,
                             precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"contrastive": loss.item()}

    log = train_loop(run, "clip", settings.steps, {"clip": clip}, optimizer, settings.lr, step,
                     data_rng=rng, threads=threads)
    clip.eval()
    log["data"] = settings.data
    log["precision"] = precision
    # Top-1 on single-object crops of training scenes: what the image-crop baseline will rely on.
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
