"""The interactive face of OV-SAM: set an image once, then segment and name many prompts.

`OVSAMPredictor` owns the split the model is built for: the image side (CLIP backbone, SAM2CLIP
adapter, FPN) runs once per image and is cached; the prompt side (prompt encoder, decoder, region
pooling, text matching) runs per request, batched. It speaks the caller's language: numpy images
of any size, prompts in original-image pixels, masks back at the original resolution.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np
import torch

from ovsam_model.backends import InferenceBackend, create_backend
from ovsam_model.segment_everything import grid_points, mask_nms, mask_scores, stability_scores
from ovsam_model.feature_cache import CachedImage, FeatureCache, image_key
from ovsam_model.image_input import as_rgb_uint8
from ovsam_model.instances import InstancePrediction
from ovsam_model.mask_postprocess import frame_masks
from ovsam_model.config import OVSAMConfig, get_config
from ovsam_model.modeling.ovsam import OVSAM, build_model
from ovsam_model.prompts import PromptSpec
from ovsam_model.text_query import canonical_class_name, parse_text_query
from ovsam_model.vocabulary import (
    Vocabulary,
    VocabularyError,
    load_vocabulary,
    load_vocabulary_file,
    text_model_key,
)

logger = logging.getLogger(__name__)

SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# File names a model directory may use for its own default vocabulary (save_vocabulary format).
VOCABULARY_FILE_NAMES = ("vocabulary.pt", "vocabulary.pth")
VOCABULARY_FILE_SUFFIXES = (".pt", ".pth", ".bin")
DEFAULT_VOCABULARY = "lvis"


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


@dataclass
class _Decoded:
    """Decoder results of some prompts on one image, before upsampling and naming."""

    prompt_ids: list[str]
    low_res_logits: torch.Tensor  # [N, 1, S/4, S/4]
    region_embedding: torch.Tensor  # [N, text_dim]


class OVSAMPredictor:
    """Segment and recognise prompts on cached images.

    Thread-safe: one lock serialises calls, so a multi-threaded ROS executor may share it.
    """

    def __init__(self, model: OVSAM, vocabulary: Vocabulary | None = None, *, cache_size: int = 4,
                 backend: InferenceBackend | None = None) -> None:
        self.model = model.eval()
        # Runs encode_image/decode (torch eager by default; see ovsam_model.backends); the model
        # keeps preprocessing, mask upsampling and naming.
        self.backend = backend if backend is not None else create_backend(self.model, "torch")
        self._cache = FeatureCache(cache_size)
        self._lock = threading.RLock()
        self._model_key: str | None = None
        self._vocabulary: Vocabulary | None = None
        if vocabulary is not None:
            self._vocabulary = self._checked_vocabulary(vocabulary)
        # Where the default vocabulary comes from when none is given (see `vocabulary`).
        self.default_vocabulary: str | Path = DEFAULT_VOCABULARY

    # ------------------------------------------------------------------------------ building

    @classmethod
    def from_pretrained(
        cls,
        model: str = "ovsam-shapes",
        weights_dir: str | Path | None = None,
        *,
        device: str = "auto",
        vocabulary: str | list[str] | None = None,
        cache_size: int = 4,
        clip_weights: str | Path | None = None,
        backend: str = "torch",
        precision: str = "fp32",
    ) -> "OVSAMPredictor":
        """A predictor for a named model configuration with its weights loaded.

        weights_dir None: the weights shipped in the package (ovsam_model/weights/<model>/).
        vocabulary None: the model's own vocabulary file when its weights directory has one
        (see default_vocabulary_spec; the shipped models' case), else LVIS for the released model.
        backend torch | onnxruntime | tensorrt and precision fp32 | fp16 | bf16: see
        ovsam_model.backends.create_backend (tensorrt without TensorRT or a GPU falls back, logged).
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
        load_weights(network, weights_path, clip_weights=clip_weights)
        predictor = cls(network, None, cache_size=cache_size, backend=create_backend(network, backend, precision))
        predictor.default_vocabulary = default_vocabulary_spec(config, weights_path)
        if vocabulary is not None:
            predictor.set_vocabulary(vocabulary)
        return predictor

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def cache_size(self) -> int:
        return self._cache.capacity

    # ------------------------------------------------------------------------------ vocabulary

    @property
    def model_key(self) -> str:
        """Identifies this model's text encoder and weights (the vocabulary cache key)."""
        if self._model_key is None:
            self._model_key = text_model_key(self.model.config.name, self.model.clip)
        return self._model_key

    @property
    def vocabulary(self) -> Vocabulary:
        """The vocabulary predictions are named from; the model's default is loaded on first use."""
        with self._lock:
            if self._vocabulary is None:
                self._vocabulary = self._resolve_vocabulary(self.default_vocabulary)
            return self._vocabulary

    def set_vocabulary(self, vocabulary: Vocabulary | str | list[str], *, progress: bool = False) -> Vocabulary:
        """Replace the vocabulary: a Vocabulary, 'lvis', 'coco', a class-list text file, a
        vocabulary file (.pt, from save_vocabulary), or a list of class names. Names are encoded
        with this model's text tower (cached on disk). Returns the vocabulary now in use."""
        resolved = self._resolve_vocabulary(vocabulary, progress=progress)
        with self._lock:
            self._vocabulary = resolved
        return resolved

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.model.encode_text(texts)

    def _resolve_vocabulary(self, spec: Vocabulary | str | Path | list[str], *, progress: bool = False) -> Vocabulary:
        if isinstance(spec, Vocabulary):
            return self._checked_vocabulary(spec)
        if isinstance(spec, (str, Path)) and Path(spec).suffix.lower() in VOCABULARY_FILE_SUFFIXES:
            return self._checked_vocabulary(load_vocabulary_file(spec))
        if isinstance(spec, str) and not spec.strip():
            raise VocabularyError("an empty vocabulary name; use 'lvis', 'coco', a file, or a list of class names")
        vocabulary = load_vocabulary(spec, self.encode_text, model_key=self.model_key, progress=progress)
        return self._checked_vocabulary(vocabulary)

    def _checked_vocabulary(self, vocabulary: Vocabulary) -> Vocabulary:
        text_dim = self.model.config.text_dim
        if vocabulary.dim != text_dim:
            raise VocabularyError(
                f"vocabulary {vocabulary.source!r} holds {vocabulary.dim}-d text embeddings but model "
                f"{self.model.config.name!r} matches {text_dim}-d ones: build it with this model's text tower")
        if vocabulary.model_key is not None and self._model_key is not None and vocabulary.model_key != self._model_key:
            logger.warning("vocabulary %r was encoded by %s, not by this model (%s); labels may be off",
                           vocabulary.source, vocabulary.model_key, self._model_key)
        return vocabulary

    # ------------------------------------------------------------------------------ images

    def set_image(self, image: np.ndarray, key: Hashable | None = None) -> Hashable:
        """Encode an image (backbone, adapter, FPN) unless its key is cached; returns the key.

        key None: a hash of the pixels, so the same picture is encoded once. A given key that is
        already cached is trusted without looking at `image` (that is what makes a repeated
        set_image free); use a new key for new pixels. The image becomes the default for
        predict/segment_everything/find.
        """
        with self._lock:
            if key is not None and key in self._cache:
                self._cache.touch(key)
                return key
            rgb = as_rgb_uint8(image)
            if key is None:
                key = image_key(rgb)
                if key in self._cache:
                    self._cache.touch(key)
                    return key
            height, width = rgb.shape[:2]
            with torch.no_grad():
                pixels, _ = self.model.preprocess(rgb)
                features = self.backend.encode_image(pixels)
            resized_height, resized_width = self.model.resized_shape(height, width)
            self._cache.put(key, CachedImage(features, height, width, resized_height, resized_width))
            return key

    def has_image(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._cache

    def image_size(self, key: Hashable | None = None) -> tuple[int, int]:
        """(height, width) of a cached image (None: the most recently set)."""
        with self._lock:
            entry = self._cache.get(key)
            return entry.height, entry.width

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # ------------------------------------------------------------------------------ prompts

    def predict(
        self,
        prompts: Sequence[PromptSpec],
        key: Hashable | None = None,
        *,
        top_k: int = 5,
        vocabulary: Vocabulary | None = None,
        max_batch: int = 64,
    ) -> list[InstancePrediction]:
        """Masks and labels for prompts on a cached image (key None: the most recently set).

        Every prompt is validated before any work (PromptError names the failing prompt id).
        Prompts with the same layout (number of points, box or not) are decoded together, up to
        `max_batch` per pass. Different layouts cannot share a pass: SAM's decoder reads the
        prompt tokens as one sequence, and padding a shorter prompt with extra tokens would change
        its result. All decoded prompts are recognised in one batch against the vocabulary.
        Results come back in the order of `prompts`; zero prompts give [].
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        prompts = list(prompts)
        with self._lock:
            entry = self._cache.get(key)
            if not prompts:
                return []
            for prompt in prompts:
                prompt.validate(entry.height, entry.width)
            vocabulary = self._checked_vocabulary(vocabulary) if vocabulary is not None else self.vocabulary

            layouts: dict[tuple[int, bool], list[int]] = {}
            for index, prompt in enumerate(prompts):
                layouts.setdefault((prompt.num_points, prompt.has_box), []).append(index)
            order: list[int] = []
            logits: list[torch.Tensor] = []
            regions: list[torch.Tensor] = []
            with torch.no_grad():
                for indices in layouts.values():
                    for start in range(0, len(indices), max_batch):
                        chunk = indices[start:start + max_batch]
                        decoded = self._decode_prompts(entry, [prompts[i] for i in chunk])
                        order.extend(chunk)
                        logits.append(decoded.low_res_logits)
                        regions.append(decoded.region_embedding)
                # Back to the caller's order before naming, so one classify call serves all.
                inverse = torch.empty(len(order), dtype=torch.long)
                inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
                inverse = inverse.to(self.device)
                decoded_all = _Decoded(
                    prompt_ids=[prompt.prompt_id for prompt in prompts],
                    low_res_logits=torch.cat(logits)[inverse],
                    region_embedding=torch.cat(regions)[inverse],
                )
                return self._finish(entry, decoded_all, vocabulary, top_k)

    def _decode_prompts(self, entry: CachedImage, prompts: Sequence[PromptSpec]) -> _Decoded:
        """One decoder pass for prompts that share a layout."""
        device = self.device
        to_network = torch.tensor([entry.x_scale, entry.y_scale], dtype=torch.float32, device=device)
        points = labels = boxes = None
        if prompts[0].num_points:
            points = torch.as_tensor(np.stack([p.points for p in prompts]), dtype=torch.float32, device=device)
            points = points * to_network
            labels = torch.as_tensor(np.stack([p.labels_or_default() for p in prompts]), device=device)
        if prompts[0].has_box:
            boxes = torch.as_tensor(np.stack([p.box for p in prompts]), dtype=torch.float32, device=device)
            boxes = boxes * to_network.repeat(2)
        output = self.backend.decode(entry.features, points, labels, boxes)
        return _Decoded([p.prompt_id for p in prompts], output.mask_logits, output.region_embedding)

    def _finish(self, entry: CachedImage, decoded: _Decoded, vocabulary: Vocabulary, top_k: int) -> list[InstancePrediction]:
        """Upsample masks to the original image, score them, and name them."""
        if top_k < 0:
            raise ValueError(f"top_k must be 0 or more, got {top_k}")
        count = len(decoded.prompt_ids)
        if count == 0:
            return []
        class_logits = self.model.classify(decoded.region_embedding, vocabulary.embeddings.to(self.device))
        probabilities = torch.softmax(class_logits.float(), dim=-1)[:, :-1].cpu()
        keep_top = min(top_k, vocabulary.size)
        top_values, top_rows = torch.topk(probabilities, k=max(keep_top, 1), dim=-1)

        results: list[InstancePrediction] = []
        frames = frame_masks(self.model, decoded.low_res_logits, (entry.height, entry.width))
        for row, frame in enumerate(frames):
            if frame.box is None:
                results.append(InstancePrediction(decoded.prompt_ids[row], frame.mask, 0.0, None, -1, "", 0.0))
                continue
            indices = [int(i) for i in top_rows[row, :keep_top]]
            results.append(InstancePrediction(
                prompt_id=decoded.prompt_ids[row],
                mask=frame.mask,
                mask_score=frame.score,
                box=frame.box,
                class_index=int(top_rows[row, 0]),
                label=vocabulary.names[int(top_rows[row, 0])],
                score=float(top_values[row, 0]),
                top_labels=[vocabulary.names[i] for i in indices],
                top_scores=[float(v) for v in top_values[row, :keep_top]],
                top_indices=indices,
            ))
        return results

    # ------------------------------------------------------------------------------ automatic

    def segment_everything(
        self,
        key: Hashable | None = None,
        *,
        points_per_side: int = 16,
        batch_size: int = 64,
        min_mask_score: float = 0.5,
        stability_threshold: float = 0.8,
        stability_offset: float = 1.0,
        nms_iou: float = 0.7,
        min_area: int = 16,
        max_instances: int = 100,
        top_k: int = 5,
        vocabulary: Vocabulary | None = None,
    ) -> list[InstancePrediction]:
        """Every object the model finds from a grid of single foreground-point prompts.

        The points_per_side^2 grid is decoded `batch_size` prompts at a time; masks whose mean
        foreground probability is below min_mask_score, whose stability (area ratio between
        thresholds +-stability_offset logits) is below stability_threshold, or whose area is
        below min_area original pixels are dropped; duplicates (mask IoU above nms_iou) are
        removed keeping the more confident mask; the rest are named and returned by descending
        label score, at most max_instances. Prompt ids are "grid-<i>" with i the grid point's
        index (row-major). Filtering and de-duplication use the decoder's stride-4 masks; the
        returned mask score and area are re-checked at the original resolution.
        """
        return self._everything(
            key, points_per_side=points_per_side, batch_size=batch_size, min_mask_score=min_mask_score,
            stability_threshold=stability_threshold, stability_offset=stability_offset, nms_iou=nms_iou,
            min_area=min_area, max_instances=max_instances, top_k=top_k, vocabulary=vocabulary)

    def find(
        self,
        queries: Sequence[str] | str,
        key: Hashable | None = None,
        *,
        score_threshold: float = 0.0,
        **everything_kwargs,
    ) -> list[InstancePrediction]:
        """Instances of the queried classes ("mug, bottle" or a list of names) in an image.

        Runs segment_everything with the current vocabulary plus the queried names it lacks
        (encoded with this model's text tower, for this call only: `vocabulary` is unchanged),
        and keeps instances whose label is a queried class with score >= score_threshold.
        Queries match vocabulary names ignoring case and '_' vs ' ' ("tennis racket" finds LVIS's
        "tennis_racket"). max_instances (default 100) applies after that filter.
        """
        names = parse_text_query(queries)
        if "vocabulary" in everything_kwargs and everything_kwargs["vocabulary"] is not None:
            base = self._checked_vocabulary(everything_kwargs.pop("vocabulary"))
        else:
            everything_kwargs.pop("vocabulary", None)
            base = self.vocabulary
        existing = {}
        for name in base.names:
            existing.setdefault(canonical_class_name(name), name)
        wanted: list[str] = []
        for name in names:
            wanted.append(existing.get(canonical_class_name(name), name))
        missing = [name for name in wanted if name not in base]
        extended = base.extend(missing, self.encode_text) if missing else base
        return self._everything(key, vocabulary=extended, wanted_labels=set(wanted),
                                score_threshold=score_threshold, **everything_kwargs)

    def _everything(
        self,
        key: Hashable | None,
        *,
        points_per_side: int = 16,
        batch_size: int = 64,
        min_mask_score: float = 0.5,
        stability_threshold: float = 0.8,
        stability_offset: float = 1.0,
        nms_iou: float = 0.7,
        min_area: int = 16,
        max_instances: int = 100,
        top_k: int = 5,
        vocabulary: Vocabulary | None = None,
        wanted_labels: set[str] | None = None,
        score_threshold: float = 0.0,
    ) -> list[InstancePrediction]:
        if not 1 <= points_per_side <= 128:
            raise ValueError(f"points_per_side must be in 1..128, got {points_per_side}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_instances < 0:
            raise ValueError(f"max_instances must be 0 or more, got {max_instances}")
        with self._lock:
            entry = self._cache.get(key)
            vocabulary = self._checked_vocabulary(vocabulary) if vocabulary is not None else self.vocabulary
            grid = grid_points(points_per_side, entry.height, entry.width)
            # Low-res masks are compared only over the part of the grid the image covers.
            stride = self.model.config.image_size / self.model.config.low_res_mask_size
            valid_h = math.ceil(entry.resized_height / stride)
            valid_w = math.ceil(entry.resized_width / stride)
            # Original pixels per low-res cell, for the area pre-filter.
            cell_area = (entry.height / (entry.resized_height / stride)) * (entry.width / (entry.resized_width / stride))

            kept_ids: list[str] = []
            kept_logits: list[torch.Tensor] = []
            kept_regions: list[torch.Tensor] = []
            kept_quality: list[torch.Tensor] = []
            with torch.no_grad():
                for start in range(0, grid.shape[0], batch_size):
                    batch = [PromptSpec(f"grid-{start + i}", points=point[None, :], point_labels=[1])
                             for i, point in enumerate(grid[start:start + batch_size])]
                    decoded = self._decode_prompts(entry, batch)
                    low = decoded.low_res_logits[:, 0, :valid_h, :valid_w].float()
                    quality = mask_scores(low)
                    stable = stability_scores(low, offset=stability_offset)
                    area = (low > 0).flatten(1).sum(dim=1).float() * cell_area
                    keep = (quality >= min_mask_score) & (stable >= stability_threshold) & (area >= min_area)
                    rows = torch.nonzero(keep).flatten().tolist()
                    if not rows:
                        continue
                    kept_ids.extend(batch[r].prompt_id for r in rows)
                    kept_logits.append(decoded.low_res_logits[rows])
                    kept_regions.append(decoded.region_embedding[rows])
                    kept_quality.append(quality[rows])
                if not kept_ids:
                    return []
                logits = torch.cat(kept_logits)
                quality = torch.cat(kept_quality)
                binary = logits[:, 0, :valid_h, :valid_w] > 0
                survivors = mask_nms(binary, quality, nms_iou).tolist()
                candidates = _Decoded(
                    prompt_ids=[kept_ids[i] for i in survivors],
                    low_res_logits=logits[survivors],
                    region_embedding=torch.cat(kept_regions)[survivors],
                )
                predictions = self._finish(entry, candidates, vocabulary, top_k)
        predictions = [p for p in predictions if p.box is not None and p.area >= min_area
                       and p.mask_score >= min_mask_score]
        if wanted_labels is not None:
            predictions = [p for p in predictions if p.label in wanted_labels and p.score >= score_threshold]
        predictions.sort(key=lambda p: (-p.score, -p.mask_score))
        return predictions[:max_instances]


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

