"""Writes a trained run as shipped weights: the released files' names and key prefixes, float16 on
disk (the loader casts to the model's dtype), the whole teacher SAM in the prompt-encoder file (as
SAM's own checkpoint holds the whole SAM), and the 42-class vocabulary."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ovsam_model.checkpoint import role_state_dict
from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.training.teacher import TeacherSAM
from ovsam_model.vocabulary import Vocabulary, encode_class_names, save_vocabulary, text_model_key
from ovsam_model.weight_files import ROLE_LAYOUTS


def _compact(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


@torch.no_grad()
def shapes_vocabulary(model: OVSAM) -> Vocabulary:
    embeddings = encode_class_names(model.encode_text, list(CLASS_NAMES), progress=False)
    return Vocabulary(list(CLASS_NAMES), embeddings, source="ovsam-shapes world",
                      model_key=text_model_key(model.config.name, model.clip))


def round_to_half(*modules: torch.nn.Module) -> None:
    """Rounds weights through float16 in place, so the model in memory equals the one the shipped
    files load into (same vocabulary embeddings, same text-encoder fingerprint, same figures)."""
    with torch.no_grad():
        for module in modules:
            for tensor in module.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())


def ship(model: OVSAM, teacher: TeacherSAM, out_dir: str | Path) -> dict[str, Path]:
    round_to_half(model, teacher)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = model.config.weight_files
    written: dict[str, Path] = {}
    for layout in ROLE_LAYOUTS:
        path = out_dir / files[layout.role]
        if layout.role == "prompt_encoder":
            # The student's prompt encoder is the teacher's, frozen: the teacher file serves both.
            state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
            student = role_state_dict(model, "prompt_encoder")
            if any(not torch.equal(student[k], state[k]) for k in student):
                raise RuntimeError("the model's prompt encoder differs from the teacher's; "
                                   "it must be the frozen teacher's")
        else:
            state = role_state_dict(model, layout.role)
        state = _compact(state)
        if layout.role == "clip":
            from safetensors.torch import save_file
            save_file(state, str(path))
        else:
            torch.save({"state_dict": state}, path)
        written[layout.role] = path
    vocabulary_path = out_dir / files.get("vocabulary", "vocabulary.pt")
    written["vocabulary"] = save_vocabulary(shapes_vocabulary(model), vocabulary_path)
    return written
