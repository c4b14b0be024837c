"""Building a ready predictor from a model name and a weights directory (as SAM's build_sam.py).

`build_predictor` resolves the device, finds the weights (the package's shipped ones, or a
directory the user downloaded), builds the network from its configuration, loads the files
strictly, picks the inference backend and the model's default vocabulary.
`OVSAMPredictor.from_pretrained` is this function.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ovsam_model.backends import InferenceBackend, create_backend
from ovsam_model.config import OVSAMConfig, get_config
from ovsam_model.modeling.ovsam import build_model
from ovsam_model.predictor import DEFAULT_VOCABULARY, OVSAMPredictor

SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# File names a model directory may use for its own default vocabulary (save_vocabulary format).
VOCABULARY_FILE_NAMES = ("vocabulary.pt", "vocabulary.pth")


class WeightsNotFoundError(FileNotFoundError):
    """No weights directory for a model; the message says how to get one."""


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> CUDA when available, else the CPU; anything else as torch reads it."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but this torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return resolved


def shipped_weights_dir(model_name: str) -> Path:
    return SHIPPED_WEIGHTS_DIR / model_name


def build_predictor(
    model: str = "ovsam-shapes",
    weights_dir: str | Path | None = None,
    *,
    device: str = "auto",
    vocabulary: str | list[str] | None = None,
    cache_size: int = 4,
    clip_weights: str | Path | None = None,
    backend: str = "torch",
    precision: str = "fp32",
    verify_digests: bool = True,
    inference_server: str = "",
    server_timeout_s: float = 10.0,
) -> OVSAMPredictor:
    """A predictor for a named model configuration with its weights loaded.

    weights_dir None: the weights shipped in the package (ovsam_model/weights/<model>/).
    vocabulary None: the model's own vocabulary file when its weights directory has one
    (see default_vocabulary_spec; the shipped models' case), else LVIS for the released model.
    backend torch | onnxruntime | tensorrt and precision fp32 | fp16 | bf16: see
    ovsam_model.backends.create_backend (tensorrt without TensorRT or a GPU falls back, logged).
    verify_digests: files whose role has a released SHA-256 in the configuration must match it;
    False loads your own weights saved under the released file names (still strictly by keys).
    inference_server: a Triton server's host:port; when given, the image and prompt halves run
    there (ovsam_model.backends.triton_backend; `backend` and `precision` are then the server
    repository's business) and only preprocessing, upsampling and naming run here.
    """
    from ovsam_model.checkpoint import load_weights

    config = get_config(model)
    if weights_dir is None:
        weights_path = shipped_weights_dir(config.name)
        if not weights_path.is_dir():
            raise WeightsNotFoundError(
                f"model {config.name!r} has no weights in this installation ({weights_path}); "
                f"fetch them with `ovsam-model download {config.name}` and pass weights_dir, "
                "or use the shipped model 'ovsam-shapes'")
    else:
        weights_path = Path(weights_dir).expanduser()
        if not weights_path.is_dir():
            raise WeightsNotFoundError(
                f"weights directory {str(weights_path)!r} does not exist; "
                f"fetch the weights with `ovsam-model download {config.name}`")
    network = build_model(config, device=resolve_device(device))
    load_weights(network, weights_path, clip_weights=clip_weights, verify_digests=verify_digests)
    if inference_server:
        from ovsam_model.backends.triton_backend import TritonBackend

        runner: InferenceBackend = TritonBackend(network, inference_server, timeout_s=server_timeout_s)
    else:
        runner = create_backend(network, backend, precision)
    predictor = OVSAMPredictor(network, None, cache_size=cache_size, backend=runner)
    predictor.default_vocabulary = default_vocabulary_spec(config, weights_path)
    if vocabulary is not None:
        predictor.set_vocabulary(vocabulary)
    return predictor


def default_vocabulary_spec(config: OVSAMConfig, weights_dir: Path) -> str | Path:
    """Where a model's default vocabulary comes from: the file its configuration names as
    weight_files["vocabulary"] (the shipped models' own class list), else a vocabulary.pt next to
    the weights, else the configuration's extra["default_vocabulary"], else LVIS."""
    named = config.weight_files.get("vocabulary")
    candidates = ([named] if named else []) + list(VOCABULARY_FILE_NAMES)
    for name in candidates:
        candidate = Path(weights_dir) / name
        if candidate.is_file():
            return candidate
    spec = config.extra.get("default_vocabulary") if isinstance(config.extra, dict) else None
    if spec:
        path = Path(spec)
        if not path.is_absolute() and (Path(weights_dir) / path).exists():
            return Path(weights_dir) / path
        return spec
    return DEFAULT_VOCABULARY
