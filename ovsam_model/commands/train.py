"""`ovsam-model train`: the shipped model's training, stage by stage (see ovsam_model.training).

    ovsam-model train --out DIR [--stage all|clip|teacher|distill|clip2sam|recognition] [--seed N] [--force]
                      [--ship-to DIR] [--threads N] [--jobs N] [--quick] [--clip-data scenes|object_crops]
                      [--piled-scenes N]

A stage whose result exists in DIR is skipped unless --force; an interrupted stage resumes from
its last checkpoint. With --ship-to, the finished model is written there in the released files'
layout (the shipped model is `--ship-to ovsam_model/weights/ovsam-shapes`).

Two pairs of stages do not depend on each other: the CLIP stage and the teacher SAM; and, once
those are done, the recognition stage (which needs only CLIP) and SAM2CLIP followed by CLIP2SAM.
With `--jobs 2` (the default on a machine with two or more cores, for --stage all) the teacher, then
recognition, trains in a second process with one thread while this one trains the other stages of
its pair with one thread; small models on few cores gain more from two processes than from two
threads in one. Once the second process has exited, this one takes every thread for the rest (so
its float sums, and its weights in the last digits, depend on when that happened; `--jobs 1` runs
are the same every time). The second process's output goes to DIR/teacher.log, DIR/recognition.log.
The piled scenes that CLIP2SAM adds are drawn by a helper process while this one draws the run's
scenes, so that no core idles then and none are drawn later on the critical path.
Recognition trains the FPN and RoI projection again on CLIP features it computes once (about 2 GB
of memory for the shipped model's 4,000 scenes; see ovsam_model.training.recognition).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ovsam_model.training.precision import TRAINING_PRECISIONS

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ovsam_model.training.common import ThreadSchedule
    from ovsam_model.training.pipeline import PipelineSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train the ovsam-shapes model on the synthetic shapes world")
    parser.add_argument("--out", required=True, help="run directory: data cache, per-stage checkpoints and results")
    parser.add_argument("--stage", default="all",
                        choices=["all", "clip", "teacher", "distill", "clip2sam", "recognition"],
                        help="which stage to run (default: all, in order)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--model", default="ovsam-shapes", help="model configuration (default: ovsam-shapes)")
    parser.add_argument("--force", action="store_true", help="retrain the selected stages even if finished")
    parser.add_argument("--ship-to", default=None, help="write the trained model here as shipped weight files")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="processes for the stages that are independent (the teacher beside CLIP, "
                             "recognition beside SAM2CLIP and CLIP2SAM; default: 2 on a machine with 2 or more "
                             "cores, for --stage all; 1: one after the other)")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage: a smoke test, not a model")
    parser.add_argument("--clip-data", default="scenes", choices=["scenes", "object_crops"],
                        help="CLIP stage data: image-level scene crops with alt-text captions (default, as the "
                             "real CLIP) or one crop and caption per object (the earlier recipe, an ablation)")
    parser.add_argument("--piled-scenes", type=int, default=None,
                        help="CLIP2SAM also trains on this many scenes of 3-6 objects piled around one point "
                             "(default: the recipe's, 2000; 4 with --quick; 0: the run's scenes alone)")
    parser.add_argument("--precision", default=None, choices=TRAINING_PRECISIONS,
                        help="forward pass of the CLIP, teacher and SAM2CLIP stages (default: the recipe's, the "
                             "teacher in fp32, CLIP and SAM2CLIP's adapter in bf16 on a CPU with bfloat16 "
                             "instructions, else fp32: emulated bf16 is 8-10x slower)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ovsam_model.config import ConfigError, get_config
    from ovsam_model.training.allocator import retain_freed_memory
    from ovsam_model.training.pipeline import STAGES, PipelineSettings, assemble_model, run_pipeline, stage_run

    retain_freed_memory()  # steps reuse their activations' memory instead of faulting it in again
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    try:
        config = get_config(args.model)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stages = STAGES if args.stage == "all" else (args.stage,)
    settings = PipelineSettings.quick() if args.quick else PipelineSettings()
    settings.clip.data = args.clip_data
    if args.piled_scenes is not None:
        if args.piled_scenes < 0:
            print(f"error: --piled-scenes must be 0 or more, got {args.piled_scenes}", file=sys.stderr)
            return 2
        settings.clip2sam.piled_scenes = args.piled_scenes
    if args.precision:
        settings.clip.precision = settings.teacher.precision = settings.distill.precision = args.precision
    report_precision(settings)
    jobs = args.jobs if args.jobs is not None else (2 if (os.cpu_count() or 1) >= 2 else 1)
    started = time.monotonic()
    try:
        if args.stage == "all" and jobs >= 2:
            logs = run_side_by_side(args, config, settings)
        else:
            logs = run_pipeline(config, args.out, seed=args.seed, stages=stages, force=args.force, settings=settings)
    except (FileNotFoundError, StageProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"training finished in {time.monotonic() - started:.0f} s")
    for stage, log in logs.items():
        print(f"  {stage:<9} {log.get('wall_time_s', 0):7.0f} s")
    if args.ship_to:
        if not stage_run(Path(args.out), STAGES[-1]).is_done():
            print("error: --ship-to needs every stage finished; run with --stage all", file=sys.stderr)
            return 1
        from ovsam_model.training.ship import ship
        from ovsam_model.training.teacher import load_teacher

        model = assemble_model(config, Path(args.out))
        teacher = load_teacher(config, stage_run(Path(args.out), "teacher"))
        written = ship(model, teacher, args.ship_to)
        for role, path in written.items():
            print(f"  shipped {role:<15} {path} ({path.stat().st_size / 1e6:.2f} MB)")
        (Path(args.out) / "shipped.json").write_text(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
    return 0


def report_precision(settings: "PipelineSettings") -> None:
    """Says which arithmetic each stage set to "auto" chose and why, and warns where a stage was set to
    bf16 on a CPU that would emulate it."""
    from ovsam_model.training.precision import AUTO, native_bfloat16, resolve_precision

    native = native_bfloat16()
    stages = (("CLIP", settings.clip), ("teacher", settings.teacher), ("SAM2CLIP", settings.distill))
    for name, stage in stages:
        if stage.precision != AUTO:
            continue
        chosen = resolve_precision(AUTO)
        if native is None:
            print(f"warning: torch cannot tell whether this CPU has bfloat16 instructions, so the {name} stage "
                  f"trains in {chosen}; add --precision bf16 if it has them (AVX512-BF16 or AMX)", file=sys.stderr)
        elif native:
            print(f"[precision] {name} stage in {chosen}: this CPU has bfloat16 instructions")
        else:
            print(f"[precision] {name} stage in {chosen}: this CPU has no bfloat16 instructions (bf16 would be "
                  "emulated, several times slower)")
    emulated = [name for name, stage in stages if stage.precision == "bf16"]
    if emulated and native is False:
        print(f"warning: this CPU has no bfloat16 instructions, so the {', '.join(emulated)} stage's bf16 steps "
              "will be several times slower than float32 ones; add --precision fp32", file=sys.stderr)


class StageProcessError(RuntimeError):
    """The stage trained in the second process failed."""


def threads_beside(process: subprocess.Popen, threads_alone: int) -> "ThreadSchedule":
    """One thread while `process` runs, then `threads_alone`: the core it used is free once it has
    exited."""
    return lambda: 1 if process.poll() is None else threads_alone


# Stages that do not depend on each other: (the stage trained in a second process, the stages this
# one trains meanwhile). The teacher needs nothing the CLIP stage makes; recognition needs only CLIP.
SIDE_BY_SIDE = (("teacher", ("clip",)), ("recognition", ("distill", "clip2sam")))


def run_side_by_side(args: argparse.Namespace, config: Any, settings: Any) -> dict[str, Any]:
    """Every stage, each pair of `SIDE_BY_SIDE` in two processes (see the module's docstring)."""
    import torch

    from ovsam_model.training.pipeline import STAGES, run_pipeline, stage_run

    out = Path(args.out)
    if args.force:
        for stage in STAGES:
            shutil.rmtree(stage_run(out, stage).directory, ignore_errors=True)
    piles = render_piles_beside(out / "data", args.seed, settings.clip2sam.piled_scenes)
    data_log = run_pipeline(config, out, seed=args.seed, stages=(), settings=settings)  # before two processes read it
    if piles is not None:
        piles.result()  # long done (~20 s against the scenes' ~35 s); raises what the helper raised
    threads = torch.get_num_threads()
    for beside, here in SIDE_BY_SIDE:
        if not stage_run(out, beside).is_done() and not all(stage_run(out, stage).is_done() for stage in here):
            train_beside(args, beside, here, lambda schedule: run_pipeline(
                config, out, seed=args.seed, stages=here, settings=settings, threads=schedule), threads)
        if not all(stage_run(out, stage).is_done() for stage in (beside, *here)):
            run_pipeline(config, out, seed=args.seed, stages=(beside, *here), settings=settings)  # one was done
    logs = run_pipeline(config, out, seed=args.seed, stages=STAGES, settings=settings)  # every stage's log
    return {**logs, "data": data_log["data"]}


def render_piles_beside(data_dir: Path, seed: int, num_scenes: int) -> "Future[None] | None":
    """Renders CLIP2SAM's piled scenes into the run's data cache in a second process, on the core that
    would otherwise idle while this one renders the training scenes. Drawn when CLIP2SAM starts, they
    would cost the critical path ~20 s (2,000 scenes on the development VM). None when they are cached
    already or not wanted."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ovsam_model.training.data import cache_piled_training_scenes, piled_scenes_path

    if num_scenes <= 0 or piled_scenes_path(data_dir, seed, num_scenes).is_file():
        return None
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    future = executor.submit(cache_piled_training_scenes, data_dir, seed, num_scenes)
    executor.shutdown(wait=False)
    return future


def train_beside(args: argparse.Namespace, beside: str, here: tuple[str, ...],
                 train_here: "Callable[[ThreadSchedule], Any]", threads: int) -> None:
    """Trains the stage `beside` in a second process (one thread; its output in DIR/<stage>.log) while
    `train_here` trains `here` in this one: one thread while the other runs, then `threads`."""
    import torch

    out = Path(args.out)
    command = [sys.executable, "-m", "ovsam_model.cli", "train", "--out", str(out), "--stage", beside,
               "--seed", str(args.seed), "--model", args.model, "--threads", "1", "--jobs", "1"]
    if args.quick:
        command.append("--quick")
    if args.precision:
        command += ["--precision", args.precision]
    log_path = out / f"{beside}.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    print(f"[{beside}] training in process {process.pid} beside the {' and '.join(here)} stage(s); "
          f"its output: {log_path}")
    torch.set_num_threads(1)
    try:
        train_here(threads_beside(process, threads))
    except BaseException:
        process.terminate()  # this process stops (an error, Ctrl-C): so does its helper
        process.wait()
        raise
    finally:
        torch.set_num_threads(threads)
    code = process.wait()
    if code != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise StageProcessError(f"the {beside} stage's process exited with {code}; the end of {log_path}:\n{tail}")
