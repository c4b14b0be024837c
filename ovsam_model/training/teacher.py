"""Stage (b): a small SAM teacher (ViT image encoder, prompt encoder, mask decoder) for promptable
segmentation. Its state dict has SAM's own layout (`image_encoder.*`, `prompt_encoder.*`,
`mask_decoder.*`), so the shipped teacher file is read like SAM's released checkpoint."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import Tensor, nn
from tqdm import tqdm

from ovsam_model.config import OVSAMConfig
from ovsam_model.synthetic.scenes import SceneSet
from ovsam_model.training.common import StageRun, seed_everything, train_loop
from ovsam_model.training.data import PROMPT_KINDS, augment, normalise, prompts_of_kind, sample_scene_prompts
from ovsam_model.training.losses import mask_losses
from ovsam_model.training.precision import forward_precision, resolve_precision


def teacher_settings(config: OVSAMConfig) -> dict[str, Any]:
    """The teacher's architecture, from the config's `extra.teacher` (defaults fit ovsam-shapes)."""
    defaults = {"embed_dim": config.adapter["embed_dim"], "depth": 4, "num_heads": 4, "patch_size": 16}
    return {**defaults, **config.extra.get("teacher", {})}


class TeacherSAM(nn.Module):
    """SAM in miniature; attribute names are SAM's, so the state dict reads like sam_vit_h_4b8939.pth."""

    def __init__(self, config: OVSAMConfig) -> None:
        super().__init__()
        arch = teacher_settings(config)
        grid = config.image_size // arch["patch_size"]
        self.image_encoder = ImageEncoderViT(
            img_size=config.image_size, patch_size=arch["patch_size"], embed_dim=arch["embed_dim"],
            depth=arch["depth"], num_heads=arch["num_heads"], mlp_ratio=4, out_chans=config.prompt_embed_dim,
            qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=0,
            global_attn_indexes=tuple(range(arch["depth"])),
        )
        self.prompt_encoder = PromptEncoder(
            embed_dim=config.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size), mask_in_chans=config.prompt_mask_in_chans,
        )
        # One mask token (no multi-mask outputs), as OV-SAM's decoder has; SAM's IoU head comes along.
        self.mask_decoder = MaskDecoder(
            num_multimask_outputs=0,
            transformer=TwoWayTransformer(depth=config.decoder["depth"], embedding_dim=config.prompt_embed_dim,
                                          mlp_dim=config.decoder["mlp_dim"], num_heads=config.decoder["num_heads"]),
            transformer_dim=config.prompt_embed_dim, iou_head_depth=2, iou_head_hidden_dim=64,
        )

    def decode(self, embedding: Tensor, points: Tensor | None = None, boxes: Tensor | None = None,
               image_index: Tensor | None = None) -> Tensor:
        """Low-resolution mask logits [N, 1, S/4, S/4] for N prompts on one image's embedding [1, C, h, w],
        or with `image_index` [N] on the images of a batch of embeddings [B, C, h, w]. points [N, P, 2] are
        positive clicks, boxes [N, 4]; both in network-input pixels."""
        point_input = None if points is None else (points, torch.ones(points.shape[:2]))
        sparse, dense = self.prompt_encoder(points=point_input, boxes=boxes, masks=None)
        if image_index is not None:
            # SAM's decoder adds the dense prompt embedding to one image's embedding copied per prompt;
            # handing it each prompt's own image embedding in the dense part (and zeros as the image)
            # gives the same sum, so prompts on many images go through it in one call.
            dense = dense + embedding[image_index]
            embedding = torch.zeros_like(embedding[:1])
        logits, _ = self.mask_decoder(image_embeddings=embedding, image_pe=self.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=False)
        return logits


@dataclass
class TeacherStageSettings:
    # Trained beside the CLIP stage (`--jobs 2`), which takes ~25 min: 2,300 steps fill that time
    # (its loss was still falling at 1,400; 1,800 steps gave 0.855 box mIoU against 0.830).
    steps: int = 2300
    images_per_step: int = 8
    prompts_per_image: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    precision: str = "fp32"  # in bf16 it segments worse (0.866 box mIoU against 0.871; training/precision.py)


def teacher_loss(teacher: TeacherSAM, config: OVSAMConfig, scenes: SceneSet, index: np.ndarray,
                 rng: np.random.Generator, prompts_per_image: int, precision: str = "fp32") -> tuple[Tensor, Tensor]:
    """BCE and Dice over the prompts of the scenes `index` (augmented, prompts drawn from rng): the
    mean over the box prompts and the mean over the point prompts, averaged. Every image has as many
    prompts of each kind (`sample_prompts`), so this is also the mean over images of each image's own
    such average; all images' prompts of a kind go through the decoder together."""
    images, maps = augment(scenes.images[index], scenes.instance_maps[index], rng)
    with forward_precision(precision):
        embeddings = teacher.image_encoder(normalise(images, config))
    prompts = sample_scene_prompts(scenes, index, maps, rng, config.image_size, prompts_per_image)
    bce, dice, parts = embeddings.new_zeros((), dtype=torch.float32), embeddings.new_zeros((), dtype=torch.float32), 0
    for kind in PROMPT_KINDS:
        gathered = prompts_of_kind(prompts, kind)
        if gathered is None:
            continue
        with forward_precision(precision):
            logits = teacher.decode(embeddings, image_index=gathered.image_index, **{kind: gathered.prompts})
        b_loss, d_loss = mask_losses(logits.float(), gathered.targets)
        bce, dice, parts = bce + b_loss, dice + d_loss, parts + 1
    return bce / max(parts, 1), dice / max(parts, 1)


def train_teacher(config: OVSAMConfig, scenes: SceneSet, run: StageRun, seed: int,
                  settings: TeacherStageSettings) -> dict[str, Any]:
    precision = resolve_precision(settings.precision)
    seed_everything(seed)
    teacher = TeacherSAM(config).train()
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng((seed, 4))

    def step(i: int) -> dict[str, float]:
        index = rng.integers(len(scenes), size=settings.images_per_step)
        bce, dice = teacher_loss(teacher, config, scenes, index, rng, settings.prompts_per_image, precision)
        loss = bce + dice
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"bce": bce.item(), "dice": dice.item()}

    log = train_loop(run, "teacher", settings.steps, {"teacher": teacher}, optimizer, settings.lr, step,
                     data_rng=rng)
    # SAM2CLIP's targets, computed here: with `--jobs 2` this process runs beside the CLIP stage,
    # off the critical path, where SAM2CLIP would compute them after it.
    teacher.eval()
    started = time.monotonic()
    with torch.no_grad():
        teacher_embeddings(teacher, scenes, len(scenes), config, scene_embeddings_path(run))
    log["scene_embeddings_s"] = time.monotonic() - started
    log["precision"] = precision
    run.save_final({"teacher": teacher.state_dict()}, log)
    return log


def scene_embeddings_path(run: StageRun) -> Path:
    """Where the teacher stage keeps its embeddings of the training scenes (they go when it is redone)."""
    return run.directory / "scene_embeddings.npy"


@torch.no_grad()
def teacher_embeddings(teacher: TeacherSAM, scenes: SceneSet, count: int, config: OVSAMConfig, path: Path,
                       batch: int = 32) -> np.ndarray:
    """The teacher's embeddings of the first `count` scenes, float16, cached at `path` (a cache of
    more scenes serves too)."""
    if path.is_file():
        cached = np.load(path)
        if len(cached) >= count:
            return cached[:count]
    out = None
    for start in tqdm(range(0, count, batch), desc="teacher embeddings"):
        stop = min(start + batch, count)
        emb = teacher.image_encoder(normalise(scenes.images[start:stop], config)).numpy().astype(np.float16)
        if out is None:
            out = np.zeros((count,) + emb.shape[1:], dtype=np.float16)
        out[start:start + len(emb)] = emb
    np.save(path, out)
    return out


def load_teacher(config: OVSAMConfig, run: StageRun) -> TeacherSAM:
    teacher = TeacherSAM(config)
    teacher.load_state_dict(run.load_final()["teacher"])
    return teacher.eval()
