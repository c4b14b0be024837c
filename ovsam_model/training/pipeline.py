"""The whole training run, stage after stage, each skipped when its result already exists."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ovsam_model.config import OVSAMConfig, get_config
from ovsam_model.modeling.ovsam import OVSAM, build_model
from ovsam_model.synthetic.scenes import SceneSet
from ovsam_model.training.clip2sam import Clip2SamStageSettings, train_clip2sam
from ovsam_model.training.clip_stage import ClipStageSettings, train_clip
from ovsam_model.training.common import StageRun, ThreadSchedule, seed_everything
from ovsam_model.training.data import piled_training_scenes, training_scenes
from ovsam_model.training.distill import DistillStageSettings, train_distill
from ovsam_model.training.recognition import RecognitionStageSettings, load_trained_state, train_recognition
from ovsam_model.training.teacher import (
    TeacherStageSettings,
    load_teacher,
    scene_embeddings_path,
    train_teacher,
)

STAGES = ("clip", "teacher", "distill", "clip2sam", "recognition")


@dataclass
class PipelineSettings:
    num_scenes: int = 4000
    clip: ClipStageSettings = field(default_factory=ClipStageSettings)
    teacher: TeacherStageSettings = field(default_factory=TeacherStageSettings)
    distill: DistillStageSettings = field(default_factory=DistillStageSettings)
    clip2sam: Clip2SamStageSettings = field(default_factory=Clip2SamStageSettings)
    recognition: RecognitionStageSettings = field(default_factory=RecognitionStageSettings)

    @classmethod
    def quick(cls) -> "PipelineSettings":
        """A few steps per stage: checks the pipeline end to end, not a useful model."""
        return cls(num_scenes=64, clip=ClipStageSettings(steps=4, batch_size=32),
                   teacher=TeacherStageSettings(steps=3, images_per_step=2, prompts_per_image=4),
                   distill=DistillStageSettings(steps=3, batch_size=4, cache_scenes=16),
                   clip2sam=Clip2SamStageSettings(steps=3, images_per_step=2, prompts_per_image=4, piled_scenes=4),
                   recognition=RecognitionStageSettings(steps=3, boxes_per_step=8, variants=2))


def stage_run(out_dir: Path, stage: str) -> StageRun:
    return StageRun(out_dir / stage)


def assemble_model(config: OVSAMConfig, out_dir: Path, upto: str = STAGES[-1]) -> OVSAM:
    """The library's model with the weights of every finished stage up to `upto`."""
    model = build_model(config)
    model.clip.load_state_dict(stage_run(out_dir, "clip").load_final()["clip"])
    if STAGES.index(upto) >= STAGES.index("distill"):
        model.neck_student.load_state_dict(stage_run(out_dir, "distill").load_final()["neck_student"])
    if STAGES.index(upto) >= STAGES.index("clip2sam"):
        teacher = load_teacher(config, stage_run(out_dir, "teacher"))
        model.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
        final = stage_run(out_dir, "clip2sam").load_final()
        model.mask_decoder.load_state_dict(final["mask_decoder"])
        model.fpn_neck.load_state_dict(final["fpn_neck"])
    if upto == "recognition":
        load_trained_state(model, stage_run(out_dir, "recognition").load_final())
    return model.eval()


def run_pipeline(config: OVSAMConfig | str, out_dir: str | Path, seed: int = 0, stages: tuple[str, ...] = STAGES,
                 force: bool = False, settings: PipelineSettings | None = None,
                 threads: ThreadSchedule | None = None) -> dict[str, Any]:
    """Runs `stages` in order into `out_dir`; returns {stage: log}. A finished stage is skipped
    (its log reused) unless `force`; an interrupted one resumes from its checkpoint. `threads`: the
    threads per step (see `train_loop`) of the CLIP, SAM2CLIP and CLIP2SAM stages, which train beside
    another process with `ovsam-model train --jobs 2`."""
    config = get_config(config) if isinstance(config, str) else config
    settings = settings or PipelineSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(json.dumps({"config": config.name, "seed": seed, **asdict(settings)},
                                                      indent=2))
    data_dir = out_dir / "data"
    logs: dict[str, Any] = {}
    started = time.monotonic()
    scenes = training_scenes(data_dir, seed, settings.num_scenes)
    logs["data"] = {"wall_time_s": time.monotonic() - started, "scenes": len(scenes)}
    for stage in STAGES:
        if stage not in stages:
            continue
        run = stage_run(out_dir, stage)
        if run.is_done() and not force:
            print(f"[{stage}] done already ({run.final_path}); --force retrains it")
            logs[stage] = json.loads(run.log_path.read_text()) if run.log_path.is_file() else {}
            continue
        if force and run.directory.exists():
            shutil.rmtree(run.directory)
        if stage == "clip":
            logs[stage] = train_clip(config, scenes, run, data_dir, seed, settings.clip, threads=threads)
        elif stage == "teacher":
            logs[stage] = train_teacher(config, scenes, run, seed, settings.teacher)
        elif stage == "distill":
            # Building the model draws the new modules' initial weights from torch's global generator,
            # which torch seeds at random in each process: seeded here, a run is the same every time.
            seed_everything(seed)
            model = assemble_model(config, out_dir, upto="clip")
            teacher = load_teacher(config, stage_run(out_dir, "teacher"))
            logs[stage] = train_distill(model, teacher, scenes, run, seed, settings.distill, threads=threads,
                                        targets_path=scene_embeddings_path(stage_run(out_dir, "teacher")))
        elif stage == "clip2sam":
            seed_everything(seed)  # the FPN's and roi_conv's initial weights, as for distill
            model = assemble_model(config, out_dir, upto="distill")
            teacher = load_teacher(config, stage_run(out_dir, "teacher"))
            if settings.clip2sam.piled_scenes > 0:
                clip2sam_scenes = SceneSet.concatenate(
                    [scenes, piled_training_scenes(data_dir, seed, settings.clip2sam.piled_scenes)])
            else:
                clip2sam_scenes = scenes
            logs[stage] = train_clip2sam(model, teacher, clip2sam_scenes, run, seed, settings.clip2sam,
                                         threads=threads)
        else:
            model = assemble_model(config, out_dir, upto="clip")  # the stage needs CLIP alone
            logs[stage] = train_recognition(model, scenes, run, seed, settings.recognition)
        print(f"[{stage}] {logs[stage].get('wall_time_s', 0):.0f} s; "
              f"loss {logs[stage].get('loss_first')} -> {logs[stage].get('loss_last')}")
    (out_dir / "training_log.json").write_text(json.dumps(logs, indent=2))
    return logs
