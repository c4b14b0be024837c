"""The interactive face of OV-SAM: set an image once, then segment and name many prompts.

`OVSAMPredictor` owns the split the model is built for: the image side (CLIP backbone, SAM2CLIP
adapter, FPN) runs once per image and is cached; the prompt side (prompt encoder, decoder, region
pooling, text matching) runs per request, batched. It speaks the caller's language: numpy images
of any size, prompts in original-image pixels, masks back at the original resolution.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from ovsam_model.backends import InferenceBackend, create_backend
from ovsam_model.feature_cache import CachedImage, FeatureCache, image_key
from ovsam_model.image_input import as_rgb_uint8
from ovsam_model.instances import InstancePrediction
from ovsam_model.mask_postprocess import frame_masks
from ovsam_model.modeling.ovsam import OVSAM, ImageFeatures
from ovsam_model.prompts import PromptSpec
from ovsam_model.vocabulary import (
    Vocabulary,
    VocabularyError,
    load_vocabulary,
    load_vocabulary_file,
    text_model_key,
)

logger = logging.getLogger(__name__)

VOCABULARY_FILE_SUFFIXES = (".pt", ".pth", ".bin")
DEFAULT_VOCABULARY = "lvis"


@dataclass
class DecodedPrompts:
    """Decoder results of some prompts on one image, before upsampling and naming."""

    prompt_ids: list[str]
    low_res_logits: torch.Tensor  # [N, 1, S/4, S/4]
    region_embedding: torch.Tensor  # [N, text_dim]


def _own_copy(features: ImageFeatures) -> ImageFeatures:
    return ImageFeatures(embedding=features.embedding.clone(), fpn=tuple(level.clone() for level in features.fpn),
                         clip_last=features.clip_last.clone())


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
        verify_digests: bool = True,
        inference_server: str = "",
        server_timeout_s: float = 10.0,
    ) -> "OVSAMPredictor":
        """A predictor for a named model configuration with its weights loaded (see
        ovsam_model.build.build_predictor for the arguments)."""
        from ovsam_model.build import build_predictor

        return build_predictor(model, weights_dir, device=device, vocabulary=vocabulary, cache_size=cache_size,
                               clip_weights=clip_weights, backend=backend, precision=precision,
                               verify_digests=verify_digests, inference_server=inference_server,
                               server_timeout_s=server_timeout_s)

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

    def set_image(self, image: np.ndarray, key: Hashable | None = None, *, cache_group: str = "") -> Hashable:
        """Encode an image (backbone, adapter, FPN) unless its key is cached; returns the key.

        key None: a hash of the pixels, so the same picture is encoded once. A given key that is
        already cached is trusted without looking at `image` (that is what makes a repeated
        set_image free); use a new key for new pixels. The image becomes the default for
        predict/segment_everything/find. `cache_group` (e.g. a camera's name): images of one group
        evict only each other, up to `cache_size` per group.
        """
        return self.set_images([image], [key], cache_groups=[cache_group])[0]

    def set_images(self, images: Sequence[np.ndarray], keys: Sequence[Hashable | None] | None = None, *,
                   cache_groups: Sequence[str] | None = None) -> list[Hashable]:
        """set_image for several images (several cameras' frames), the ones not cached encoded as
        batches of up to the backend's `max_image_batch`; returns their keys in order. The last image
        becomes the default for predict. Features are those of encoding each image alone, up to float
        noise of the batched convolutions."""
        keys = list(keys) if keys is not None else [None] * len(images)
        groups = list(cache_groups) if cache_groups is not None else [""] * len(images)
        if not len(keys) == len(groups) == len(images):
            raise ValueError(f"set_images got {len(images)} images, {len(keys)} keys and {len(groups)} cache groups")
        with self._lock:
            resolved: list[Hashable] = []
            to_encode: dict[Hashable, tuple[np.ndarray, str]] = {}
            for image, key, group in zip(images, keys, groups):
                rgb = None
                if key is None:
                    rgb = as_rgb_uint8(image)
                    key = image_key(rgb)
                resolved.append(key)
                if key in self._cache:
                    self._cache.touch(key)
                elif key not in to_encode:
                    to_encode[key] = (as_rgb_uint8(image) if rgb is None else rgb, group)
            pending = [(key, rgb, group) for key, (rgb, group) in to_encode.items()]
            batch = max(1, int(self.backend.max_image_batch))
            for start in range(0, len(pending), batch):
                self._encode_batch(pending[start:start + batch])
            # More new images than a group holds evict the group's older ones, the last image included
            # when it was cached before the others were encoded.
            if resolved and resolved[-1] in self._cache:
                self._cache.touch(resolved[-1])
            return resolved

    def _encode_batch(self, items: list[tuple[Hashable, np.ndarray, str]]) -> None:
        """Encode (key, rgb, cache group) images as one batch and cache each one's features in its group."""
        with torch.no_grad():
            pixels = torch.cat([self.model.preprocess(rgb)[0] for _, rgb, _ in items])
            features = self.backend.encode_image(pixels)
        for index, (key, rgb, group) in enumerate(items):
            height, width = rgb.shape[:2]
            resized_height, resized_width = self.model.resized_shape(height, width)
            # A copy, not a view of the batch: evicting one camera's frame must free its memory.
            one = features if len(items) == 1 else _own_copy(features.select(index))
            self._cache.put(key, CachedImage(one, height, width, resized_height, resized_width), group)

    def has_image(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._cache

    def image_size(self, key: Hashable | None = None) -> tuple[int, int]:
        """(height, width) of a cached image (None: the most recently set)."""
        with self._lock:
            entry = self._cache.get(key)
            return entry.height, entry.width

    def cached_image(self, key: Hashable | None = None) -> CachedImage:
        """The cached features and geometry of an image (None: the most recently set); raises
        ImageNotSetError when it is not cached. The entry stays valid after eviction."""
        with self._lock:
            return self._cache.get(key)

    @property
    def low_res_stride(self) -> float:
        """Network-input pixels per cell of the decoder's low-resolution masks."""
        return self.model.config.image_size / self.model.config.low_res_mask_size

    def vocabulary_for(self, vocabulary: Vocabulary | None) -> Vocabulary:
        """`vocabulary` checked against this model's text tower, or the current one when None."""
        return self._checked_vocabulary(vocabulary) if vocabulary is not None else self.vocabulary

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
            vocabulary = self.vocabulary_for(vocabulary)

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
                        decoded = self.decode(entry, [prompts[i] for i in chunk])
                        order.extend(chunk)
                        logits.append(decoded.low_res_logits)
                        regions.append(decoded.region_embedding)
                # Back to the caller's order before naming, so one classify call serves all.
                inverse = torch.empty(len(order), dtype=torch.long)
                inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
                inverse = inverse.to(self.device)
                decoded_all = DecodedPrompts(
                    prompt_ids=[prompt.prompt_id for prompt in prompts],
                    low_res_logits=torch.cat(logits)[inverse],
                    region_embedding=torch.cat(regions)[inverse],
                )
                return self.name(entry, decoded_all, vocabulary, top_k)

    def decode(self, entry: CachedImage, prompts: Sequence[PromptSpec]) -> DecodedPrompts:
        """One decoder pass for prompts that share a layout (number of points, box or not), on an
        image from cached_image(); masks stay at the decoder's low resolution, unnamed."""
        with self._lock, torch.no_grad():
            device = self.device
            to_network = torch.tensor(self.model.input_scales(entry.height, entry.width), dtype=torch.float32,
                                      device=device)
            points = labels = boxes = None
            if prompts[0].num_points:
                points = torch.as_tensor(np.stack([p.points for p in prompts]), dtype=torch.float32, device=device)
                points = points * to_network
                labels = torch.as_tensor(np.stack([p.labels_or_default() for p in prompts]), device=device)
            if prompts[0].has_box:
                boxes = torch.as_tensor(np.stack([p.box for p in prompts]), dtype=torch.float32, device=device)
                boxes = boxes * to_network.repeat(2)
            output = self.backend.decode(entry.features, points, labels, boxes)
            return DecodedPrompts([p.prompt_id for p in prompts], output.mask_logits, output.region_embedding)

    def name(self, entry: CachedImage, decoded: DecodedPrompts, vocabulary: Vocabulary,
             top_k: int) -> list[InstancePrediction]:
        """Upsample decoded masks to the original image, score them, and name them from `vocabulary`."""
        with self._lock, torch.no_grad():
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

    def segment_everything(self, key: Hashable | None = None, **options: Any) -> list[InstancePrediction]:
        """Every object the model finds on a cached image: see
        ovsam_model.segment_everything.segment_everything for the options."""
        from ovsam_model.segment_everything import segment_everything

        return segment_everything(self, key, **options)

    def find(self, queries: Sequence[str] | str, key: Hashable | None = None,
             **options: Any) -> list[InstancePrediction]:
        """Instances of the queried classes ("mug, bottle" or a list of names) on a cached image: see
        ovsam_model.segment_everything.find for the options."""
        from ovsam_model.segment_everything import find

        return find(self, queries, key, **options)
