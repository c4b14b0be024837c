"""A small least-recently-used store of per-image features.

OV-SAM's expensive part (CLIP backbone, SAM2CLIP adapter, FPN) depends only on the image; every
click, box or text query on the same image reuses it. Keeping the features of the last few images
lets an operator go back to an earlier frame, or several cameras share one predictor, without
re-encoding.

Entries belong to groups (a camera's frames, say): each group holds up to `capacity` images and a new
image evicts the least recently used one of its own group, so a busy camera never pushes another
camera's frames out. Without groups (the default group "") it is a plain LRU of `capacity` images.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable

import numpy as np


class ImageNotSetError(LookupError):
    """A prediction asked for an image whose features are not (or no longer) cached."""


@dataclass
class CachedImage:
    """What the predictor keeps per image: the network features and how to map back."""

    features: Any          # ovsam_model.modeling.ovsam.ImageFeatures
    height: int            # original image size
    width: int
    resized_height: int    # the image's extent inside the padded network input
    resized_width: int


def image_key(image: np.ndarray) -> str:
    """A content hash of an image array (shape, dtype and pixels): equal pictures share a key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((image.shape, image.dtype.str)).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


class FeatureCache:
    """Up to `capacity` CachedImage entries per group; adding one beyond that evicts the least recently
    used entry of the same group."""

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError(f"cache_size must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, CachedImage] = OrderedDict()
        self._group_of: dict[Hashable, str] = {}
        self._latest: Hashable | None = None

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        return list(self._entries)

    def groups(self) -> dict[str, int]:
        """How many images each group holds."""
        counts: dict[str, int] = {}
        for key in self._entries:
            group = self._group_of[key]
            counts[group] = counts.get(group, 0) + 1
        return counts

    @property
    def latest_key(self) -> Hashable | None:
        """The key most recently stored or touched by `put`/`touch`, if still cached."""
        return self._latest if self._latest in self._entries else None

    def put(self, key: Hashable, entry: CachedImage, group: str = "") -> None:
        """Store `entry` under `key` in `group` (a key stored again moves to the new group)."""
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self._group_of[key] = group
        self._latest = key
        same_group = [k for k in self._entries if self._group_of[k] == group]
        for evicted in same_group[:max(0, len(same_group) - self.capacity)]:
            del self._entries[evicted]
            del self._group_of[evicted]

    def touch(self, key: Hashable) -> None:
        """Mark a cached key as the most recent image (as set_image of a cached image does)."""
        self._entries.move_to_end(key)
        self._latest = key

    def get(self, key: Hashable | None = None) -> CachedImage:
        """The entry for `key` (None: the most recent image); refreshes its place in the LRU order."""
        if key is None:
            key = self.latest_key
            if key is None:
                raise ImageNotSetError("no image is set: call set_image(image) before predicting")
        entry = self._entries.get(key)
        if entry is None:
            raise ImageNotSetError(
                f"image {key!r} is not cached (never set, or evicted: the cache holds {self.capacity} "
                "images per group); call set_image again")
        self._entries.move_to_end(key)
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._group_of.clear()
        self._latest = None
