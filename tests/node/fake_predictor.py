"""A small Predictor (ovsam_model.predictor_protocol) for tests about scheduling, not answers.

Every prompt gets the mask of its box (or a 9x9 square around its first point), labelled with the
first vocabulary class; text queries find one instance per queried name. Each model call can take
a fixed time (slept, or added to a test's virtual clock through `sleep`) and is recorded with the
thread it ran on, so tests can check who called the model and when, without torch.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import numpy as np

from ovsam_model.instances import InstancePrediction
from ovsam_model.prompts import PromptSpec


@dataclass(frozen=True)
class FakeVocabulary:
    names: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.names)


class FakePredictor:
    def __init__(self, classes: Sequence[str] = ("red star", "blue cross"), *, encode_s: float = 0.0,
                 decode_s_per_prompt: float = 0.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.encode_s, self.decode_s_per_prompt = encode_s, decode_s_per_prompt
        self._sleep = sleep
        self.device = "fake"
        self.default_vocabulary = "fake-default"
        self.vocabulary = FakeVocabulary(tuple(classes))
        self.calls: list[tuple[str, int]] = []   # (method, thread id)
        self._images: dict[Hashable, tuple[int, int]] = {}
        self.encoded_batches: list[list[Hashable]] = []  # the keys of each encoder pass
        self._lock = threading.Lock()   # guards the record only: tests check the model needs no lock

    def _record(self, method: str) -> None:
        with self._lock:
            self.calls.append((method, threading.get_ident()))

    def set_image(self, image: np.ndarray, key: Hashable | None = None, *, cache_group: str = "") -> Hashable:
        self._record("set_image")
        return self._encode([image], [key])[0]

    def set_images(self, images: Sequence[np.ndarray], keys: Sequence[Hashable | None] | None = None, *,
                   cache_groups: Sequence[str] | None = None) -> list[Hashable]:
        self._record("set_images")
        return self._encode(images, keys)

    def _encode(self, images: Sequence[np.ndarray], keys: Sequence[Hashable | None] | None) -> list[Hashable]:
        """One encoder pass for the images not cached (`encode_s` per pass, as a batch would cost)."""
        keys = list(keys) if keys is not None else [None] * len(images)
        resolved = [key if key is not None else id(image) for image, key in zip(images, keys)]
        new = [(key, image) for key, image in zip(resolved, images) if key not in self._images]
        if new:
            self._sleep(self.encode_s)
            self.encoded_batches.append([key for key, _ in new])
        for key, image in new:
            self._images[key] = (int(image.shape[0]), int(image.shape[1]))
        return resolved

    def has_image(self, key: Hashable) -> bool:
        self._record("has_image")
        return key in self._images

    def predict(self, prompts: Sequence[PromptSpec], key: Hashable | None = None, *,
                top_k: int = 5) -> list[InstancePrediction]:
        self._record("predict")
        self._sleep(self.decode_s_per_prompt * len(prompts))
        height, width = self._images[key]
        return [self._instance(prompt.prompt_id, self._box(prompt, height, width), height, width) for prompt in prompts]

    def find(self, queries: Sequence[str], key: Hashable | None = None, *, top_k: int = 5,
             max_instances: int = 100, points_per_side: int = 16,
             score_threshold: float = 0.0) -> list[InstancePrediction]:
        self._record("find")
        height, width = self._images[key]
        found = [self._instance("", (0, 0, max(1, width // 2), max(1, height // 2)), height, width, label=name)
                 for name in queries]
        return [p for p in found if p.score >= score_threshold][:max_instances]

    def set_vocabulary(self, vocabulary: str | list[str]) -> FakeVocabulary:
        self._record("set_vocabulary")
        names = tuple(vocabulary) if isinstance(vocabulary, list) else (str(vocabulary),)
        if not names:
            raise ValueError("an empty vocabulary")
        self.vocabulary = FakeVocabulary(names)
        return self.vocabulary

    @staticmethod
    def _box(prompt: PromptSpec, height: int, width: int) -> tuple[int, int, int, int]:
        if prompt.box is not None:
            x0, y0, x1, y1 = (float(v) for v in prompt.box)
        else:
            x, y = (float(v) for v in np.asarray(prompt.points)[0])
            x0, y0, x1, y1 = x - 4, y - 4, x + 5, y + 5
        x0, y0 = int(max(0, min(width - 1, x0))), int(max(0, min(height - 1, y0)))
        return x0, y0, int(max(x0 + 1, min(width, x1))), int(max(y0 + 1, min(height, y1)))

    def _instance(self, prompt_id: str, box: tuple[int, int, int, int], height: int, width: int,
                  label: str | None = None) -> InstancePrediction:
        mask = np.zeros((height, width), dtype=bool)
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = True
        name = label if label is not None else self.vocabulary.names[0]
        return InstancePrediction(prompt_id=prompt_id, mask=mask, mask_score=0.9, box=box, class_index=0,
                                  label=name, score=0.8, top_labels=[name], top_scores=[0.8], top_indices=[0])
