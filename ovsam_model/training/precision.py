"""The arithmetic of a training stage's forward pass: "fp32", or "bf16" (bfloat16 matmuls and
convolutions under torch's autocast; weights, gradients, optimiser state and losses stay float32).

The recipe (the stages' settings) trains the CLIP stage in bf16 and the teacher in fp32. The CLIP
stage is the run's critical path, a stack of convolutions on batches of 128 images; on a CPU with
native bfloat16 arithmetic (AVX512-BF16, AMX) its steps are cheaper: on the 2-core development VM
(AMD EPYC, AVX512-BF16), one thread, median of alternated steps
(`python -m ovsam_model.benchmark.training_precision`), 1.02 s in float32 against 0.72 s in bf16
(2026-12-02 17:53), 1.04 s against 0.79 s (2026-12-03 10:07). It learns as much (contrastive loss
0.73 after 2,400 steps either way). The teacher stays float32: trained in bf16 it segmented worse
(box mIoU 0.866 against 0.871, and its student 0.871 against 0.876; docs/model-card-ovsam-shapes.md).
Where the CPU has no bfloat16 instructions autocast still works, only far more slowly: on a 2-core
AMD EPYC VM with AVX2 and no AVX-512 (2026-12-03), a CLIP step took 21.9 s in bf16 against 2.09 s
in float32, a teacher step 8.8 s against 1.08 s. So the CLIP stage's setting is "auto"
(`resolve_precision`): bf16 where `native_bfloat16` says the CPU has the instructions, float32
elsewhere and where it cannot tell.

SAM2CLIP's adapter trains in bf16 too ("auto"), a stack of ViT blocks that is the critical path once
CLIP is done: its step costs 0.47 s against 0.64 s in float32 (one thread, batch 16, 2026-12-04). Its
input, the frozen CLIP's features, is computed in float32, as at inference. The stages that train on
frozen features with masks (CLIP2SAM, recognition) stay float32."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

TRAINING_PRECISIONS = ("fp32", "bf16")  # the arithmetic of a forward pass
AUTO = "auto"  # a stage setting: bf16 on a CPU with bfloat16 instructions, fp32 elsewhere


def check_precision(precision: str) -> None:
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"training precision must be one of {', '.join(TRAINING_PRECISIONS)}, got {precision!r}")


def resolve_precision(setting: str) -> str:
    """The arithmetic a stage whose `precision` setting is `setting` trains in: the setting itself,
    or for "auto" bf16 where this CPU computes bfloat16 natively and fp32 elsewhere, including where
    torch cannot say (an emulated bf16 step costs 8-10 float32 ones; a float32 step on a CPU with
    the instructions, about 1.3)."""
    if setting == AUTO:
        return "bf16" if native_bfloat16() else "fp32"
    if setting not in TRAINING_PRECISIONS:
        raise ValueError(f"a stage's training precision must be {AUTO!r} or one of "
                         f"{', '.join(TRAINING_PRECISIONS)}, got {setting!r}")
    return setting


def forward_precision(precision: str, device_type: str = "cpu") -> ContextManager[object]:
    """The context a stage's forward pass runs in; losses are computed outside it, in float32."""
    check_precision(precision)
    if precision == "fp32":
        return nullcontext()
    import torch  # here, so that the CLI can offer TRAINING_PRECISIONS without loading torch

    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def native_bfloat16() -> bool | None:
    """Whether this CPU computes bfloat16 natively (oneDNN's own check); None where torch cannot
    say."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None
