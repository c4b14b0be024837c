"""The PyTorch backend: OVSAM's own forward passes, optionally in fp16/bf16, channels-last, compiled.

With the defaults (fp32, no channels-last, no compile) it calls OVSAM.encode_image / OVSAM.decode
unchanged. The options are for GPUs:
- precision fp16/bf16 runs both halves under autocast (matmuls and convolutions in half precision,
  normalisations and softmax in fp32); outputs come back as fp32 so callers never see half tensors.
- channels_last stores the CNN parts (CLIP trunk, FPN) NHWC, which tensor cores prefer; by default
  (None) it is on exactly when running fp16/bf16 on a GPU.
- compile_image = "default" | "reduce-overhead" | "max-autotune" compiles the fixed-shape image
  part with torch.compile; "reduce-overhead" replays it as a CUDA graph.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable, ContextManager

import torch
from torch import Tensor

from ovsam_model.modeling.clip_backbone import trunk_features
from ovsam_model.modeling.ovsam import OVSAM, DecoderOutput, ImageFeatures

from .base import PRECISION_DTYPES, check_precision, features_from_outputs
from .graphs import ImageGraph

logger = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


class TorchBackend:
    name = "torch"
    max_image_batch = 8
    fallback_reason = ""  # set by create_backend when this backend stands in for another

    def __init__(self, model: OVSAM, precision: str = "fp32", *, channels_last: bool | None = None,
                 compile_image: str | None = None) -> None:
        self.model = model.eval()
        self.precision = check_precision(precision)
        if channels_last is None:
            channels_last = precision != "fp32" and self.device.type == "cuda"
        self.channels_last = bool(channels_last)
        self.compile_image = compile_image
        if precision == "fp16" and self.device.type == "cpu":
            logger.warning("precision fp16 on the CPU is slow in PyTorch (few fp16 kernels); bf16 or fp32 are faster")
        if self.channels_last:
            model.clip.visual.to(memory_format=torch.channels_last)
            model.fpn_neck.to(memory_format=torch.channels_last)
        self._compiled: Callable[[Tensor], tuple[Tensor, ...]] | None = None
        if compile_image is not None:
            if compile_image not in COMPILE_MODES:
                raise ValueError(f"compile_image {compile_image!r} is not one of {', '.join(COMPILE_MODES)}")
            self._compiled = torch.compile(ImageGraph(model).eval(), mode=compile_image)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_plain(self) -> bool:
        """True when this backend is exactly OVSAM's own fp32 eager forward pass."""
        return self.precision == "fp32" and not self.channels_last and self._compiled is None

    def autocast(self) -> ContextManager:
        """The precision context every forward pass of this backend runs in."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISION_DTYPES[self.precision])

    def describe(self) -> str:
        options = [self.precision]
        if self.channels_last:
            options.append("channels_last")
        if self.compile_image:
            options.append(f"compile={self.compile_image}")
        return f"torch ({', '.join(options)}) on {self.device}"

    # -- the image part, also stage by stage (the benchmark times each) ---------------------------
    def prepare_pixels(self, pixels: Tensor) -> Tensor:
        size = self.model.config.image_size
        if pixels.dim() != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[-2:]) != (size, size):
            raise ValueError(f"expected pixels [B, 3, {size}, {size}] (see preprocess), got {tuple(pixels.shape)}")
        pixels = pixels.to(device=self.device, dtype=torch.float32)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return pixels

    def backbone(self, pixels: Tensor) -> tuple[Tensor, ...]:
        with self.autocast():
            return trunk_features(self.model.clip.visual, self.prepare_pixels(pixels))

    def adapter(self, levels: tuple[Tensor, ...]) -> Tensor:
        with self.autocast():
            return _as_fp32(self.model.neck_student(levels))

    def fpn(self, levels: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        with self.autocast():
            return tuple(_as_fp32(level) for level in self.model.fpn_neck(levels))

    def encode_image(self, pixels: Tensor) -> ImageFeatures:
        if self.is_plain:
            return self.model.encode_image(pixels)
        if self._compiled is not None:
            with self.autocast():
                outputs = self._compiled(self.prepare_pixels(pixels))
            return features_from_outputs([_as_fp32(output) for output in outputs])
        levels = self.backbone(pixels)
        return ImageFeatures(embedding=self.adapter(levels), fpn=self.fpn(levels), clip_last=_as_fp32(levels[-1]))

    # -- the prompt part ---------------------------------------------------------------------------
    def decode(self, features: ImageFeatures, points: Tensor | None = None, point_labels: Tensor | None = None,
               boxes: Tensor | None = None) -> DecoderOutput:
        if self.precision == "fp32":
            return self.model.decode(features, points, point_labels, boxes)
        with self.autocast():
            output = self.model.decode(features, points, point_labels, boxes)
        return DecoderOutput(
            mask_logits=_as_fp32(output.mask_logits),
            region_embedding=_as_fp32(output.region_embedding),
            mask_boxes=_as_fp32(output.mask_boxes),
            label_embedding=None if output.label_embedding is None else _as_fp32(output.label_embedding),
        )


def _as_fp32(tensor: Tensor) -> Tensor:
    return tensor.float().contiguous()
