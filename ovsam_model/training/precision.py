"""The arithmetic of a training stage's forward pass: "fp32", or "bf16" (bfloat16 matmuls and
convolutions under torch's autocast; weights, gradients, optimiser state and losses stay float32).

bf16 is for the two long stages, the CLIP stage and the teacher, whose steps are convolutions and
matmuls on large batches. On a CPU with native bfloat16 arithmetic (AVX512-BF16, AMX) their steps
are cheaper: on the 2-core development VM (AMD EPYC, AVX512-BF16), 2026-12-02 17:53, one thread,
median of 11 alternated steps (`python -m ovsam_model.benchmark.training_precision`), a CLIP step
took 1.02 s in float32 and 0.72 s in bf16, a teacher step 0.70 and 0.53 s. With the other process
training beside it the gain is smaller (the CLIP stage's one-thread steps beside a bf16 teacher
averaged 0.78 s in a full run that hour). Where the CPU has no bfloat16 instructions autocast still
works, only more slowly; choose "fp32" there.

The stages that train on frozen features (SAM2CLIP, CLIP2SAM, recognition) stay float32: their
inputs must be what the model computes at inference, in float32."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

TRAINING_PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"training precision must be one of {', '.join(TRAINING_PRECISIONS)}, got {precision!r}")


def forward_precision(precision: str, device_type: str = "cpu") -> ContextManager[object]:
    """The context a stage's forward pass runs in; losses are computed outside it, in float32."""
    check_precision(precision)
    if precision == "fp32":
        return nullcontext()
    import torch  # here, so that the CLI can offer TRAINING_PRECISIONS without loading torch

    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
