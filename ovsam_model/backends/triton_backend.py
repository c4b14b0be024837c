"""The Triton client backend: OV-SAM's two halves run by a Triton Inference Server.

`TritonBackend` is an `InferenceBackend`, so an `OVSAMPredictor` built on it keeps everything
else local and unchanged: preprocessing, the feature cache, mask upsampling and naming against
the vocabulary. Given the same features the server computes what the local torch backend would,
so the predictor publishes the same answers.

Features travel once per image, to the client: `encode_image` returns them, the predictor's
FeatureCache keeps them, and each prompt request sends them back with the prompts. The server
stays stateless (any instance, any replica, a restarted server can answer any request, and the
ONNX variant works unchanged); see docs/triton.md for the measured cost of that choice.

Every failure raises `InferenceServerError` with the reason (unreachable, timed out, model not
loaded, the model's own error); the engine turns it into a failure of each prompt. Nothing is
kept across calls but the HTTP client, which is rebuilt after a connection failure, so a server
that restarts is used again as soon as it is ready.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ovsam_model.modeling.ovsam import OVSAM, DecoderOutput, ImageFeatures
from ovsam_model.triton.names import FEATURE_OUTPUTS, IMAGE_INPUT, IMAGE_MODEL, PROMPT_OUTPUTS, prompt_model

from .base import BackendUnavailableError, prompt_arrays

DEFAULT_TIMEOUT_S = 10.0


class InferenceServerError(RuntimeError):
    """A call to the inference server failed; the message says why (and names the server)."""


@dataclass
class ServerStatus:
    """What diagnostics show about the server: where, in what state, how fast the last call was."""

    url: str
    state: str = "not contacted"    # ready | unreachable | timed out | model not loaded | model error
    last_latency_s: float | None = None
    last_error: str = ""
    calls: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, str]:
        latency = "" if self.last_latency_s is None else f"{self.last_latency_s * 1000:.1f} ms"
        return {"inference_server": self.url, "server_state": self.state, "server_latency": latency,
                "server_last_error": self.last_error, "server_failures": f"{self.failures}/{self.calls}"}


def normalise_url(url: str) -> str:
    """tritonclient wants host:port without a scheme; accept http://host:port too."""
    url = url.strip()
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    return url.rstrip("/")


class TritonBackend:
    """Runs encode_image / decode on a Triton server over HTTP (tritonclient)."""

    name = "triton"
    precision = "fp32"  # what the client sees; the server's repository decides what it runs
    # One image per request: the server's dynamic batcher already gathers the requests of every
    # client, and the client does not know the server's max_batch_size.
    max_image_batch = 1

    def __init__(self, model: OVSAM, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        try:
            import tritonclient.http  # noqa: F401
        except ImportError as error:
            raise BackendUnavailableError(
                "the Triton client needs tritonclient: pip install 'tritonclient[http]'") from error
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.model = model.eval()
        self.url = normalise_url(url)
        if not self.url:
            raise ValueError("an empty inference server address")
        self.timeout_s = float(timeout_s)
        self.status = ServerStatus(self.url)
        self._client = None
        self._lock = threading.Lock()  # tritonclient's HTTP client is not thread-safe

    @property
    def device(self) -> torch.device:
        return self.model.device

    def describe(self) -> str:
        return f"triton at {self.url} ({self.status.state})"

    # -- the two halves -------------------------------------------------------------------------
    def encode_image(self, pixels: Tensor) -> ImageFeatures:
        array = np.ascontiguousarray(pixels.detach().to("cpu", torch.float32).numpy())
        outputs = self._infer(IMAGE_MODEL, {IMAGE_INPUT: array}, FEATURE_OUTPUTS)
        # as_numpy gives read-only views of the response buffer; torch wants writable memory.
        tensors = [torch.from_numpy(outputs[name].copy()).to(self.device) for name in FEATURE_OUTPUTS]
        # clip_last feeds only the CLIP-branch evaluation, which needs the local model.
        return ImageFeatures(embedding=tensors[0], fpn=tuple(tensors[1:5]),
                             clip_last=torch.zeros((array.shape[0], 0), device=self.device))

    def decode(self, features: ImageFeatures, points: Tensor | None = None, point_labels: Tensor | None = None,
               boxes: Tensor | None = None) -> DecoderOutput:
        if features.embedding.shape[0] != 1:
            raise ValueError(f"decode works on one image's features, got a batch of {features.embedding.shape[0]}")
        prompts = prompt_arrays(points, point_labels, boxes)
        inputs = {name: _as_array(value) for name, value in zip(FEATURE_OUTPUTS, (features.embedding, *features.fpn))}
        if prompts.layout in ("points", "points_box"):
            inputs["points"] = prompts.points
            inputs["labels"] = prompts.labels
        if prompts.boxes is not None:
            inputs["boxes"] = prompts.boxes
        outputs = self._infer(prompt_model(prompts.layout), inputs, PROMPT_OUTPUTS)
        mask_logits, region_embedding, mask_boxes = (torch.from_numpy(outputs[name].copy()).to(self.device)
                                                     for name in PROMPT_OUTPUTS)
        return DecoderOutput(mask_logits=mask_logits, region_embedding=region_embedding, mask_boxes=mask_boxes)

    # -- the server -----------------------------------------------------------------------------
    def check_ready(self) -> bool:
        """Whether the server is up with every OV-SAM model loaded; updates `status`."""
        from ovsam_model.triton.names import all_models

        with self._lock:
            try:
                client = self._connected()
                missing = [name for name in all_models() if not client.is_model_ready(name)]
            except Exception as error:  # noqa: BLE001 - any transport failure means "not ready"
                self._close()
                self.status.state, self.status.last_error = "unreachable", _reason(error)
                return False
            if missing:
                self.status.state = "model not loaded"
                self.status.last_error = f"not loaded: {', '.join(missing)}"
                return False
            self.status.state = "ready"
            return True

    def close(self) -> None:
        with self._lock:
            self._close()

    def _infer(self, model_name: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException

        with self._lock:
            self.status.calls += 1
            started = time.perf_counter()
            try:
                client = self._connected()
                request_inputs = []
                for name, array in inputs.items():
                    tensor = httpclient.InferInput(name, list(array.shape), "FP32")
                    tensor.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.float32), binary_data=True)
                    request_inputs.append(tensor)
                requested = [httpclient.InferRequestedOutput(name, binary_data=True) for name in outputs]
                result = client.infer(model_name, request_inputs, outputs=requested)
                answer = {name: result.as_numpy(name) for name in outputs}
            except InferenceServerException as error:
                raise self._failed(model_name, error, transport=False) from error
            except Exception as error:  # noqa: BLE001 - sockets, gevent timeouts, HTTP parsing
                raise self._failed(model_name, error, transport=True) from error
            missing = [name for name, value in answer.items() if value is None]
            if missing:
                raise self._failed(model_name, RuntimeError(f"the answer lacks {', '.join(missing)}"), transport=False)
            self.status.state = "ready"
            self.status.last_latency_s = time.perf_counter() - started
            return answer

    def _failed(self, model_name: str, error: BaseException, *, transport: bool) -> InferenceServerError:
        reason = _reason(error)
        if transport:
            self._close()  # the next call connects afresh (the server may have restarted)
            if _is_timeout(error):
                state = "timed out"
                message = f"inference server {self.url} did not answer {model_name} within {self.timeout_s:g} s"
            else:
                state, message = "unreachable", f"inference server {self.url} is unreachable ({reason})"
        elif _is_not_loaded(reason):
            state = "model not loaded"
            message = f"model {model_name} is not loaded on inference server {self.url} ({reason})"
        else:
            state, message = "model error", f"{model_name} on inference server {self.url} failed: {reason}"
        self.status.state, self.status.last_error = state, message
        self.status.failures += 1
        return InferenceServerError(message)

    def _connected(self):  # -> tritonclient.http.InferenceServerClient
        if self._client is None:
            import tritonclient.http as httpclient

            self._client = httpclient.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s)
        return self._client

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                pass


def _as_array(value: Tensor) -> np.ndarray:
    return np.ascontiguousarray(value.detach().to("cpu", torch.float32).numpy())


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return True
    return "timeout" in type(error).__name__.lower() or "timed out" in str(error).lower()


def _is_not_loaded(reason: str) -> bool:
    lowered = reason.lower()
    return any(phrase in lowered for phrase in ("unknown model", "not found", "not ready", "unavailable",
                                                "no available version"))
