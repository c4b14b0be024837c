"""The names the Triton repository, the server-side models and the client agree on. Torch-free.

The image model (`ovsam_image`) batches across clients (Triton's dynamic batcher); there is one
prompt model per token layout (`ovsam_prompt_points`, `..._box`, `..._points_box`) because SAM's
decoder reads a prompt's tokens as one sequence and the ONNX export has one graph per layout.
"""
from __future__ import annotations

IMAGE_MODEL = "ovsam_image"
PROMPT_LAYOUTS = ("points", "box", "points_box")  # = ovsam_model.backends.base.PROMPT_LAYOUTS (torch-free copy)
IMAGE_INPUT = "pixels"
IMAGE_OUTPUTS = ("embedding", "fpn0", "fpn1", "fpn2", "fpn3", "clip_last")  # = backends.graphs.IMAGE_OUTPUTS
# What the client asks the image model for: the prompt side needs the embedding and the pyramid;
# clip_last feeds only the paper's CLIP-branch evaluation, which runs locally.
FEATURE_OUTPUTS = ("embedding", "fpn0", "fpn1", "fpn2", "fpn3")
PROMPT_OUTPUTS = ("mask_logits", "region_embedding", "mask_boxes")
REPOSITORY_BACKENDS = ("python", "onnx")


def prompt_model(layout: str) -> str:
    if layout not in PROMPT_LAYOUTS:
        raise ValueError(f"unknown prompt layout {layout!r}; known: {', '.join(PROMPT_LAYOUTS)}")
    return f"ovsam_prompt_{layout}"


def prompt_inputs(layout: str) -> tuple[str, ...]:
    """The prompt model's inputs in order: the features, then the prompts of its layout."""
    prompts = {"points": ("points", "labels"), "box": ("boxes",), "points_box": ("points", "labels", "boxes")}
    if layout not in prompts:
        raise ValueError(f"unknown prompt layout {layout!r}; known: {', '.join(PROMPT_LAYOUTS)}")
    return FEATURE_OUTPUTS + prompts[layout]


def all_models() -> tuple[str, ...]:
    return (IMAGE_MODEL,) + tuple(prompt_model(layout) for layout in PROMPT_LAYOUTS)
