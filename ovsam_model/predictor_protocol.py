"""What a predictor must offer to the ROS node: the typed seam between the node and the model.

`OVSAMPredictor` satisfies it, and so does the node's `PredictorProcess` (the same calls answered by a
child process) and the small fakes the engine's scheduling tests use. Without torch: the node process
imports this module and never loads torch when its model runs in a child process.

`PREDICTOR_METHODS` (the protocol's methods, derived from the class) is what the inference process
forwards to its child; the protocol's properties are read once when the child starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Hashable, Protocol, Sequence

import numpy as np

from .instances import InstancePrediction
from .prompts import PromptSpec


class SizedVocabulary(Protocol):
    """What the node needs of a vocabulary: how many classes it names, and their names (published on
    the node's `labels` topic so that consumers can map class indices to names)."""

    @property
    def size(self) -> int: ...

    @property
    def names(self) -> Sequence[str]: ...


class Predictor(Protocol):
    """Segments and names prompts on cached images; the calls the engine and the inference process make."""

    @property
    def device(self) -> object:
        """Where the model runs; str() names it ("cpu", "cuda:0")."""
        ...

    @property
    def vocabulary(self) -> SizedVocabulary:
        """The vocabulary predictions are named from."""
        ...

    @property
    def default_vocabulary(self) -> str | Path:
        """The vocabulary spec that means "the model's own" (an empty `vocabulary` parameter, 'default')."""
        ...

    def set_image(self, image: np.ndarray, key: Hashable | None = None, *, cache_group: str = "") -> Hashable:
        """Encode an image unless `key` is cached; returns its key. Images of one `cache_group` (a
        camera) evict only each other from the feature cache."""
        ...

    def set_images(self, images: Sequence[np.ndarray], keys: Sequence[Hashable | None] | None = None, *,
                   cache_groups: Sequence[str] | None = None) -> list[Hashable]:
        """set_image for several images (several cameras' waiting frames), encoded as one batch."""
        ...

    def has_image(self, key: Hashable) -> bool:
        """Whether the image with this key is cached (encoded)."""
        ...

    def predict(self, prompts: Sequence[PromptSpec], key: Hashable | None = None, *,
                top_k: int = 5) -> list[InstancePrediction]:
        """One prediction per prompt, in order, on the cached image `key`."""
        ...

    def find(self, queries: Sequence[str], key: Hashable | None = None, *, top_k: int = 5,
             max_instances: int = 100, points_per_side: int = 16,
             score_threshold: float = 0.0) -> list[InstancePrediction]:
        """Instances of the named classes in the cached image `key` (segment everything, then filter):
        those with label score >= score_threshold, best first, at most max_instances of them."""
        ...

    def set_vocabulary(self, vocabulary: str | list[str]) -> SizedVocabulary:
        """Replace the vocabulary ('lvis', 'coco', a file, or class names); on error the old one stays."""
        ...


PREDICTOR_METHODS: tuple[str, ...] = tuple(
    name for name, member in vars(Predictor).items() if callable(member) and not name.startswith("_"))
PREDICTOR_PROPERTIES: tuple[str, ...] = tuple(
    name for name, member in vars(Predictor).items() if isinstance(member, property))
