"""Stage (c), SAM2CLIP: the adapter on the frozen small CLIP learns to reproduce the teacher's image
embedding (MSE), on teacher embeddings computed once and cached."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ovsam_model.modeling.clip_backbone import trunk_features
from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.synthetic.scenes import SceneSet
from ovsam_model.training.common import StageRun, ThreadSchedule, seed_everything, train_loop
from ovsam_model.training.data import normalise
from ovsam_model.training.precision import AUTO, forward_precision, resolve_precision
from ovsam_model.training.teacher import TeacherSAM, teacher_embeddings


@dataclass
class DistillStageSettings:
    steps: int = 800
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    cache_scenes: int = 4000  # scenes whose teacher embedding is cached (and trained on)
    # The adapter's forward pass (the frozen CLIP's features it reads stay float32, as at inference):
    # "auto" is bf16 on a CPU with bfloat16 instructions (training/precision.py).
    precision: str = AUTO


def init_adapter_from_teacher(model: OVSAM, teacher: TeacherSAM) -> None:
    """The adapter starts where SAM's encoder ends: the teacher's absolute positions (as in the paper,
    where SAM ViT-H's pos_embed is reused), its last blocks and its neck. Shapes match by design."""
    adapter, encoder = model.neck_student, teacher.image_encoder
    adapter.pos_embed.copy_(encoder.pos_embed.detach())
    teacher_blocks = list(encoder.blocks)[-len(adapter.blocks):]
    for student_block, teacher_block in zip(adapter.blocks, teacher_blocks):
        student_block.load_state_dict(teacher_block.state_dict())
    adapter.neck.load_state_dict(encoder.neck.state_dict())


def distill_loss(model: OVSAM, images: np.ndarray, teacher_embedding: torch.Tensor,
                 precision: str = "fp32") -> torch.Tensor:
    """MSE (in float32) between the adapter's embedding of the frozen CLIP's float32 features and the
    teacher's; `precision`: the arithmetic of the adapter's forward pass."""
    with torch.no_grad():
        levels = trunk_features(model.clip.visual, normalise(images, model.config))
    with forward_precision(precision):
        embedding = model.neck_student(levels)
    return F.mse_loss(embedding.float(), teacher_embedding)


def train_distill(model: OVSAM, teacher: TeacherSAM, scenes: SceneSet, run: StageRun, seed: int,
                  settings: DistillStageSettings,
                  threads: ThreadSchedule | None = None, targets_path: Path | None = None) -> dict[str, Any]:
    """Trains the adapter; `targets_path`: where the teacher's scene embeddings are cached."""
    seed_everything(seed)
    precision = resolve_precision(settings.precision)
    config = model.config
    count = min(settings.cache_scenes, len(scenes))
    # The teacher stage's cache when given (it computes them), else one beside this stage's results.
    run.directory.mkdir(parents=True, exist_ok=True)
    targets = teacher_embeddings(teacher, scenes, count, config,
                                 targets_path or run.directory / "teacher_embeddings.npy")
    with torch.no_grad():
        init_adapter_from_teacher(model, teacher)
    adapter = model.neck_student.train()
    model.clip.eval()
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng((seed, 5))
    def step(i: int) -> dict[str, float]:
        index = np.sort(rng.integers(count, size=settings.batch_size))
        loss = distill_loss(model, scenes.images[index], torch.from_numpy(targets[index]).float(), precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"mse": loss.item()}

    log = train_loop(run, "distill", settings.steps, {"adapter": adapter}, optimizer, settings.lr, step,
                     data_rng=rng, threads=threads)
    adapter.eval()
    log["target_mean_square"] = float(np.mean(targets[:256].astype(np.float32) ** 2))
    log["precision"] = precision
    run.save_final({"neck_student": adapter.state_dict()}, log)
    return log
