"""The frozen CLIP model: its CNN trunk is OV-SAM's only image backbone, its text tower names classes.

The whole open_clip CLIP model is kept (not just the trunk) so that one CLIP file holds the image
and text weights that belong together, and so the optional attention-pool branch can reuse CLIP's
own pooling head.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import open_clip
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer
from torch import Tensor, nn


def build_clip(clip_spec: dict) -> CLIP:
    """A randomly initialised open_clip CLIP from a built-in name or a config dict.

    `clip_spec` is `{"model_name": "RN50x16", "quick_gelu": true}` for an open_clip built-in or
    `{"model_cfg": {...}}` with an open_clip model config (embed_dim, vision_cfg, text_cfg).
    Weights come later from a CLIP file (see checkpoint.load_weights).
    """
    quick_gelu = bool(clip_spec.get("quick_gelu", False))
    if "model_cfg" in clip_spec:
        model_cfg = copy.deepcopy(clip_spec["model_cfg"])
        model_cfg["quick_gelu"] = quick_gelu or bool(model_cfg.get("quick_gelu", False))
        model = CLIP(**model_cfg)
    else:
        # The OpenAI weights were trained with QuickGELU in the text tower, so the spec asks for it.
        model = open_clip.create_model(clip_spec["model_name"], pretrained=None, force_quick_gelu=quick_gelu)
    if not isinstance(model, CLIP):
        raise TypeError(f"expected an open_clip CLIP model for {clip_spec}, got {type(model).__name__}")
    _require_modified_resnet(model, clip_spec)
    return model


def build_tokenizer(clip_spec: dict) -> Callable[[list[str]], Tensor]:
    """The tokenizer that matches the CLIP text tower described by `clip_spec`."""
    if "model_cfg" in clip_spec:
        context_length = clip_spec["model_cfg"].get("text_cfg", {}).get("context_length", 77)
        return SimpleTokenizer(context_length=context_length)
    return open_clip.get_tokenizer(clip_spec["model_name"])


def _require_modified_resnet(model: CLIP, clip_spec: dict) -> None:
    visual = model.visual
    needed = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "avgpool", "layer1", "layer2", "layer3", "layer4",
              "attnpool")
    absent = [name for name in needed if not hasattr(visual, name)]
    if absent:
        raise ValueError(
            f"OV-SAM needs a CLIP with a ModifiedResNet image tower (RN50, RN50x4, RN50x16, ...); "
            f"{clip_spec} builds {type(visual).__name__}, which lacks {absent}"
        )


def trunk_features(visual: nn.Module, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four residual stages' outputs (strides 4, 8, 16, 32) of a ModifiedResNet."""
    x = visual.act1(visual.bn1(visual.conv1(pixels)))
    x = visual.act2(visual.bn2(visual.conv2(x)))
    x = visual.act3(visual.bn3(visual.conv3(x)))
    x = visual.avgpool(x)
    c2 = visual.layer1(x)
    c3 = visual.layer2(c2)
    c4 = visual.layer3(c3)
    c5 = visual.layer4(c4)
    return c2, c3, c4, c5


def attention_pool_grid(visual: nn.Module) -> int:
    """Side of the feature grid CLIP's attention pool was built for (its positional table)."""
    num_positions = visual.attnpool.positional_embedding.shape[0] - 1
    side = int(round(num_positions ** 0.5))
    if side * side != num_positions:
        raise ValueError(f"attention pool positional table of {num_positions + 1} rows is not a square grid + 1")
    return side


def clip_spec_summary(clip_spec: dict) -> str:
    """A short human-readable name for messages."""
    if "model_name" in clip_spec:
        return str(clip_spec["model_name"])
    cfg: dict[str, Any] = clip_spec.get("model_cfg", {})
    vision = cfg.get("vision_cfg", {})
    return (f"ModifiedResNet(width={vision.get('width')}, layers={vision.get('layers')}, "
            f"embed_dim={cfg.get('embed_dim')})")
