"""What every training stage shares: seeding, resumable checkpoints, a step loop with a progress bar."""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from ovsam_model.atomic_file import write_atomically

CHECKPOINT_EVERY_S = 60.0

ThreadSchedule = Callable[[], int]
"""Asked before every step: how many torch threads that step may use. A stage that shares the
machine with another process takes one core while the other runs and every core once it ends."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def cosine_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


@dataclass
class StageRun:
    """Where a stage keeps its files: `final.pt` when done, `checkpoint.pt` while running."""
    directory: Path

    @property
    def final_path(self) -> Path:
        return self.directory / "final.pt"

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / "checkpoint.pt"

    @property
    def log_path(self) -> Path:
        return self.directory / "log.json"

    def is_done(self) -> bool:
        return self.final_path.is_file()

    def save_final(self, payload: dict[str, Any], log: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_save(payload, self.final_path)
        self.log_path.write_text(json.dumps(log, indent=2))
        if self.checkpoint_path.exists():
            self.checkpoint_path.unlink()

    def load_final(self) -> dict[str, Any]:
        if not self.is_done():
            raise FileNotFoundError(f"{self.final_path} does not exist: run this training stage first")
        return torch.load(self.final_path, map_location="cpu", weights_only=True)


def _atomic_save(payload: Any, path: Path) -> None:
    write_atomically(path, lambda handle: torch.save(payload, handle))


def train_loop(
    run: StageRun,
    name: str,
    steps: int,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    base_lr: float,
    step_fn: Callable[[int], dict[str, float]],
    warmup: int = 50,
    data_rng: np.random.Generator | None = None,
    threads: ThreadSchedule | None = None,
) -> dict[str, Any]:
    """Runs `step_fn(step)` for `steps` steps with a cosine learning rate, saving a checkpoint every
    minute so an interrupted run resumes where it stopped (torch's and `data_rng`'s states included,
    so a resumed run draws the same batches). `step_fn` returns named loss values. With `threads`,
    each step runs with the number of torch threads it returns (changes are logged).
    Returns a log: first/last loss averages, the wall time and the thread changes."""
    run.directory.mkdir(parents=True, exist_ok=True)
    start_step, history, elapsed_before = 0, [], 0.0
    thread_changes: list[tuple[int, int]] = []
    if run.checkpoint_path.is_file():
        state = torch.load(run.checkpoint_path, map_location="cpu", weights_only=True)
        for key, module in modules.items():
            module.load_state_dict(state["modules"][key])
        optimizer.load_state_dict(state["optimizer"])
        start_step, history, elapsed_before = state["step"], state["history"], state["elapsed"]
        thread_changes = [tuple(change) for change in state.get("thread_changes", [])]
        torch.set_rng_state(state["torch_rng"])
        if data_rng is not None and state.get("data_rng") is not None:
            data_rng.bit_generator.state = state["data_rng"]
        print(f"[{name}] resuming at step {start_step}/{steps}")
    started = time.monotonic()
    last_save = started
    bar = tqdm(range(start_step, steps), desc=name, initial=start_step, total=steps, dynamic_ncols=True)
    for step in bar:
        if threads is not None:
            wanted = threads()
            if wanted != torch.get_num_threads():
                torch.set_num_threads(wanted)
                thread_changes.append((step, wanted))
                bar.write(f"[{name}] {wanted} thread(s) from step {step}")
        lr = cosine_lr(step, steps, base_lr, warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        losses = step_fn(step)
        history.append(losses)
        if step % 10 == 0:
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
        now = time.monotonic()
        if now - last_save > CHECKPOINT_EVERY_S and step + 1 < steps:
            _atomic_save({
                "modules": {k: m.state_dict() for k, m in modules.items()},
                "optimizer": optimizer.state_dict(),
                "step": step + 1,
                "history": history,
                "thread_changes": thread_changes,
                "elapsed": elapsed_before + now - started,
                "torch_rng": torch.get_rng_state(),
                "data_rng": data_rng.bit_generator.state if data_rng is not None else None,
            }, run.checkpoint_path)
            last_save = now
    bar.close()
    window = max(1, min(50, len(history) // 5))

    def summary(part):
        return {k: float(np.mean([h[k] for h in part])) for k in part[0]} if part else {}

    return {
        "stage": name,
        "steps": steps,
        "wall_time_s": elapsed_before + time.monotonic() - started,
        "loss_first": summary(history[:window]),
        "loss_last": summary(history[-window:]),
        "thread_changes": thread_changes,
    }
