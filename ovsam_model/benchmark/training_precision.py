"""A training step of the CLIP stage and of the teacher in float32 and in bf16 (training/precision.py).

    python -m ovsam_model.benchmark.training_precision [--model ovsam-shapes] [--steps 17] [--threads 1]
                                                       [--clip-batch 128] [--teacher-images 8] [--json OUT]

Each repeat runs one step of each stage in each precision, the two precisions in alternating order,
so that a slow spell of the machine falls on both. Each precision trains its own copy of the stage's
modules from the same initial weights, so the steps are the stage's real ones (forward, backward,
AdamW). Printed: the median and p95 per step and the ratio bf16 / fp32 (below 1: bf16 is faster).
Run it alone: another busy process on the cores moves both figures.
"""
from __future__ import annotations

import argparse
import copy
import time
from typing import Any, Callable

import numpy as np
import torch

from ovsam_model.benchmark.timing import Stopwatch, machine_info, write_figures
from ovsam_model.config import OVSAMConfig, get_config
from ovsam_model.modeling.clip_backbone import build_clip, build_tokenizer
from ovsam_model.synthetic.classes import BASE_INDICES
from ovsam_model.synthetic.scenes import SceneSet, generate_scene_set
from ovsam_model.training.allocator import retain_freed_memory
from ovsam_model.training.clip_stage import ClipStageSettings, scene_clip_loss
from ovsam_model.training.precision import TRAINING_PRECISIONS
from ovsam_model.training.teacher import TeacherSAM, TeacherStageSettings, teacher_loss

Step = Callable[[], None]
LossOf = Callable[[torch.nn.Module, np.random.Generator, str], torch.Tensor]


def _steps(module: torch.nn.Module, lr: float, loss_of: LossOf) -> dict[str, Step]:
    """One training step per precision, each on its own copy of `module` and its own optimiser."""
    steps = {}
    for precision in TRAINING_PRECISIONS:
        copy_ = copy.deepcopy(module).train()
        optimizer = torch.optim.AdamW(copy_.parameters(), lr=lr)
        rng = np.random.default_rng(0)

        def step(copy_=copy_, optimizer=optimizer, rng=rng, precision=precision) -> None:
            loss = loss_of(copy_, rng, precision)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[precision] = step
    return steps


def stage_steps(config: OVSAMConfig, scenes: SceneSet, clip_batch: int,
                teacher_images: int) -> dict[str, dict[str, Step]]:
    """{stage: {precision: step}} for the CLIP stage and the teacher, with the shipped recipe's losses."""
    clip_settings, teacher_settings = ClipStageSettings(), TeacherStageSettings()
    tokenizer = build_tokenizer(config.clip)

    def clip_loss_of(clip: torch.nn.Module, rng: np.random.Generator, precision: str) -> torch.Tensor:
        index = rng.integers(len(scenes), size=clip_batch)
        return scene_clip_loss(clip, tokenizer, config, scenes, index, rng, clip_settings.scene_crop_area, precision)

    def teacher_loss_of(teacher: torch.nn.Module, rng: np.random.Generator, precision: str) -> torch.Tensor:
        index = rng.integers(len(scenes), size=teacher_images)
        bce, dice = teacher_loss(teacher, config, scenes, index, rng, teacher_settings.prompts_per_image, precision)
        return bce + dice

    return {"clip": _steps(build_clip(config.clip), clip_settings.lr, clip_loss_of),
            "teacher": _steps(TeacherSAM(config), teacher_settings.lr, teacher_loss_of)}


def bench_training_precision(steps: dict[str, dict[str, Step]], repeats: int, warmup: int = 2) -> dict[str, Any]:
    """Median/p95 ms per step of each stage in each precision, and the ratio bf16 / fp32 of the medians."""
    watch = Stopwatch(torch.device("cpu"))
    for repeat in range(warmup + repeats):
        for stage, by_precision in steps.items():
            order = list(by_precision.items())
            for precision, step in order if repeat % 2 == 0 else order[::-1]:
                watch.measure(f"{stage}/{precision}", step, record=repeat >= warmup)
    summary = watch.summary()
    return {stage: {**{precision: summary[f"{stage}/{precision}"] for precision in by_precision},
                    "ratio_bf16_to_fp32": summary[f"{stage}/bf16"]["p50_ms"] / summary[f"{stage}/fp32"]["p50_ms"]}
            for stage, by_precision in steps.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ovsam-shapes")
    parser.add_argument("--steps", type=int, default=17, help="timed steps per stage and precision (after 2 warm-up)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, as beside a second process)")
    parser.add_argument("--clip-batch", type=int, default=ClipStageSettings.batch_size)
    parser.add_argument("--teacher-images", type=int, default=TeacherStageSettings.images_per_step)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    retain_freed_memory()  # as `ovsam-model train` does
    torch.set_num_threads(args.threads)
    config = get_config(args.model)
    torch.manual_seed(0)
    scenes = generate_scene_set(64, seed=(0, 1), size=config.image_size, classes=BASE_INDICES, progress=False)
    started = time.monotonic()
    result: dict[str, Any] = bench_training_precision(stage_steps(config, scenes, args.clip_batch, args.teacher_images),
                                                      args.steps)
    result.update(model=args.model, clip_batch=args.clip_batch, teacher_images=args.teacher_images,
                  machine=machine_info(), wall_s=round(time.monotonic() - started, 1))
    print(f"{args.model}: one training step, {args.threads} thread(s), median of {args.steps}")
    for stage in ("clip", "teacher"):
        fp32, bf16 = result[stage]["fp32"], result[stage]["bf16"]
        print(f"  {stage:<8} fp32 p50 {fp32['p50_ms']:8.1f} ms  bf16 p50 {bf16['p50_ms']:8.1f} ms  "
              f"ratio bf16 / fp32 {result[stage]['ratio_bf16_to_fp32']:.2f}")
    write_figures(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
