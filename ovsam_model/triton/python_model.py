"""The Triton Python-backend model: OV-SAM's own torch modules behind Triton's model API.

The repository's `model.py` files import `TritonPythonModel` from here, so the server runs exactly
the installed `ovsam_model` (the same `OVSAM.encode_image` / `OVSAM.decode` as the local torch
backend, fp32). One class serves every role; the role comes from the model's config.pbtxt
parameters (written by `ovsam_model.triton.repository`):
- role "image": pixels [B, 3, S, S] -> embedding, fpn0..3, clip_last. Requests the dynamic batcher
  gathered are encoded as one batch.
- role "points" | "box" | "points_box": one image's features + N prompts of that layout ->
  mask_logits, region_embedding, mask_boxes.
Every failure is answered as that request's error (the client turns it into per-prompt failures).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from ovsam_model.modeling.ovsam import OVSAM, ImageFeatures
from ovsam_model.triton.names import IMAGE_INPUT, IMAGE_OUTPUTS, PROMPT_LAYOUTS, PROMPT_OUTPUTS


def _parameters(model_config: dict) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}


def load_model(name: str, weights_dir: str | None, device: str) -> OVSAM:
    """The network of a model configuration with its weights (as the local predictor loads it)."""
    from ovsam_model.build import build_predictor

    return build_predictor(name, weights_dir or None, device=device).model


class TritonPythonModel:
    """Triton's Python-backend entry point (initialize / execute / finalize)."""

    def initialize(self, args: dict[str, Any]) -> None:
        parameters = _parameters(json.loads(args["model_config"]))
        self.role = parameters["role"]
        if self.role != "image" and self.role not in PROMPT_LAYOUTS:
            raise ValueError(f"unknown role {self.role!r}: image or one of {', '.join(PROMPT_LAYOUTS)}")
        self.model = load_model(parameters["ovsam_model"], parameters.get("weights_dir"),
                                parameters.get("device") or "auto")

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils  # exists only inside the Triton server

        if self.role == "image":
            return self._encode(requests, pb_utils)
        return [self._decode(request, pb_utils) for request in requests]

    def finalize(self) -> None:
        del self.model

    # -- the image side: one batch for everything the dynamic batcher gathered ------------------
    def _encode(self, requests: list, pb_utils: Any) -> list:
        try:
            arrays = [pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT).as_numpy() for request in requests]
            counts = [array.shape[0] for array in arrays]
            pixels = torch.from_numpy(np.concatenate(arrays)).to(self.model.device)
            with torch.inference_mode():
                features = self.model.encode_image(pixels)
            outputs = [output.float().cpu().numpy()
                       for output in (features.embedding, *features.fpn, features.clip_last)]
        except Exception as error:  # noqa: BLE001 - any failure is the requests' answer, not a server crash
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(error).__name__}: {error}"))
                    for _ in requests]
        responses = []
        start = 0
        for count in counts:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(output[start:start + count]))
                       for name, output in zip(IMAGE_OUTPUTS, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += count
        return responses

    # -- the prompt side: one image's features and the prompts of this model's layout ------------
    def _decode(self, request: Any, pb_utils: Any) -> Any:
        try:
            device = self.model.device

            def tensor(name: str) -> torch.Tensor:
                return torch.from_numpy(pb_utils.get_input_tensor_by_name(request, name).as_numpy()).to(device)

            embedding = tensor("embedding")
            features = ImageFeatures(embedding=embedding, fpn=tuple(tensor(f"fpn{i}") for i in range(4)),
                                     clip_last=embedding.new_zeros((1, 0)))
            points = labels = boxes = None
            if self.role in ("points", "points_box"):
                points, labels = tensor("points"), tensor("labels")
            if self.role in ("box", "points_box"):
                boxes = tensor("boxes")
            with torch.inference_mode():
                output = self.model.decode(features, points, labels, boxes)
            values = (output.mask_logits, output.region_embedding, output.mask_boxes)
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value.float().cpu().numpy()))
                       for name, value in zip(PROMPT_OUTPUTS, values)]
            return pb_utils.InferenceResponse(output_tensors=tensors)
        except Exception as error:  # noqa: BLE001
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(error).__name__}: {error}"))
