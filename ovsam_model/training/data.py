"""Training data: cached scene sets, batches as network tensors, augmentation and prompt sampling."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ovsam_model.config import OVSAMConfig
from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.synthetic.classes import BASE_INDICES
from ovsam_model.synthetic.prompts import jitter_box, mask_centre_point, random_interior_point
from ovsam_model.synthetic.scenes import SceneSet, generate_scene_set

RENDER_SIZE = 256
# Stream ids mixed into the run seed: each use of randomness gets its own stream.
SCENES_STREAM = 1
CROPS_STREAM = 2
# The stream of the trial that measured piled scenes for CLIP2SAM (the model card), so that the
# setting reproduces its scenes; streams 3-7 are the stages' own.
PILED_SCENES_STREAM = 77
PILE_MIN_OBJECTS = 3
PILE_SPREAD_256 = 30.0   # standard deviation of the objects' centres around the pile's point, pixels


def _cached_scene_set(path: Path, make: Callable[[], SceneSet]) -> SceneSet:
    """The scene set saved at `path`, made and saved there the first time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        return SceneSet.load(path)
    scenes = make()
    scenes.save(path)
    return scenes


def training_scenes(data_dir: Path, seed: int, num_scenes: int) -> SceneSet:
    """Base-class-only training scenes (novel classes never appear in any training image), cached."""
    return _cached_scene_set(data_dir / f"scenes_seed{seed}_n{num_scenes}.npz", lambda: generate_scene_set(
        num_scenes, seed=(seed, SCENES_STREAM), size=RENDER_SIZE, classes=BASE_INDICES, progress=True))


def piled_scenes_path(data_dir: Path, seed: int, num_scenes: int) -> Path:
    return data_dir / f"piled_seed{seed}_n{num_scenes}.npz"


def piled_training_scenes(data_dir: Path, seed: int, num_scenes: int, progress: bool = True) -> SceneSet:
    """Base-class-only scenes of 3-6 objects piled around one point (`generate_scene`'s
    `cluster_spread`), as in the demo's first frames; cached beside `training_scenes`."""
    return _cached_scene_set(piled_scenes_path(data_dir, seed, num_scenes), lambda: generate_scene_set(
        num_scenes, seed=(seed, PILED_SCENES_STREAM), size=RENDER_SIZE, classes=BASE_INDICES, progress=progress,
        min_objects=PILE_MIN_OBJECTS, cluster_spread=PILE_SPREAD_256))


def cache_piled_training_scenes(data_dir: Path, seed: int, num_scenes: int) -> None:
    """`piled_training_scenes` made and cached, for a second process (nothing to send back)."""
    piled_training_scenes(data_dir, seed, num_scenes, progress=False)


def normalise(images: np.ndarray, config: OVSAMConfig) -> Tensor:
    """uint8 [B, H, W, 3] RGB at the render size -> float [B, 3, S, S] normalised network input."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    if x.shape[-1] != config.image_size:
        x = torch.nn.functional.interpolate(x, size=(config.image_size, config.image_size), mode="bilinear",
                                            antialias=True, align_corners=False)
    mean = torch.tensor(config.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(config.pixel_std).view(1, 3, 1, 1)
    return (x - mean) / std


DIHEDRAL_VARIANTS = 8  # the square's symmetries: four quarter turns, each with or without a flip


def dihedral(array: np.ndarray, variant: int) -> np.ndarray:
    """One of the 8 flips / quarter turns of an image or map ([H, W, ...]): `variant % 4` counter-clockwise
    quarter turns, then a left-right flip when `variant >= 4`. Variant 0 is the array itself."""
    if not 0 <= variant < DIHEDRAL_VARIANTS:
        raise ValueError(f"variant must be in 0..{DIHEDRAL_VARIANTS - 1}, got {variant}")
    turned = np.rot90(array, variant % 4)
    return turned[:, ::-1] if variant >= 4 else turned


def augment(images: np.ndarray, maps: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip / quarter turn for each image and its instance map (shapes stay shapes)."""
    out_images, out_maps = images.copy(), maps.copy()
    for i in range(len(images)):
        turns = int(rng.integers(4))
        variant = turns + 4 * int(rng.integers(2))
        out_images[i], out_maps[i] = dihedral(images[i], variant), dihedral(maps[i], variant)
    return out_images, out_maps


@dataclass
class PromptBatch:
    """Prompts for one image, in network-input pixels; masks at the render size."""
    boxes: Tensor | None        # [Nb, 4]
    points: Tensor | None       # [Np, 1, 2]
    box_targets: Tensor | None  # [Nb, 1, H, W] float
    point_targets: Tensor | None
    box_labels: Tensor | None   # [Nb] class indices
    point_labels: Tensor | None


PROMPT_KINDS = ("boxes", "points")


@dataclass
class PromptsOfKind:
    """One kind of prompt of several images, image by image, for one decoder call."""
    prompts: Tensor      # [N, 4] boxes or [N, 1, 2] points
    targets: Tensor      # [N, 1, H, W] float masks
    labels: Tensor       # [N] class indices
    image_index: Tensor  # [N] the image (position in the list) each prompt is on


def sample_scene_prompts(scenes: SceneSet, index: np.ndarray, maps: np.ndarray, rng: np.random.Generator,
                         image_size: int, max_prompts: int) -> list[PromptBatch]:
    """`sample_prompts` for each scene `index[b]`, on its (augmented) instance map `maps[b]`, in order."""
    batches = []
    for b, scene_index in enumerate(index):
        labels = scenes.labels[scene_index]
        batches.append(sample_prompts(maps[b], labels[labels >= 0], rng, image_size, max_prompts))
    return batches


def prompts_of_kind(batches: Sequence[PromptBatch], kind: str) -> PromptsOfKind | None:
    """The `kind` prompts ("boxes" or "points") of every image's `PromptBatch`, together; None when
    no image has any."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"kind must be one of {PROMPT_KINDS}, got {kind!r}")
    prefix = "box" if kind == "boxes" else "point"
    shown = [(b, batch) for b, batch in enumerate(batches) if getattr(batch, kind) is not None]
    if not shown:
        return None
    return PromptsOfKind(
        prompts=torch.cat([getattr(batch, kind) for _, batch in shown]),
        targets=torch.cat([getattr(batch, f"{prefix}_targets") for _, batch in shown]),
        labels=torch.cat([torch.as_tensor(getattr(batch, f"{prefix}_labels")) for _, batch in shown]),
        image_index=torch.cat([torch.full((len(getattr(batch, kind)),), b, dtype=torch.long) for b, batch in shown]),
    )


def sample_prompts(instance_map: np.ndarray, labels: np.ndarray, rng: np.random.Generator, image_size: int,
                   max_prompts: int, box_jitter: float = 0.05) -> PromptBatch:
    """Half box, half point prompts over the instances of one scene (instances repeat when few).

    Points are the distance-transform centre half of the time (the evaluation's prompt) and a random
    interior point otherwise; boxes are jittered a little."""
    n = len(labels)
    order = rng.permutation(np.resize(rng.permutation(n), max_prompts)) if n else np.zeros(0, int)
    masks = instance_map[None] == (np.arange(1, n + 1, dtype=instance_map.dtype)[:, None, None])
    boxes_all = masks_to_boxes(masks)
    scale = image_size / instance_map.shape[0]
    half = (len(order) + int(rng.integers(2))) // 2
    box_ids, point_ids = order[:half], order[half:]
    boxes = [jitter_box(boxes_all[i], rng, box_jitter, 8.0) for i in box_ids]
    points = [mask_centre_point(masks[i]) if rng.random() < 0.5 else random_interior_point(masks[i], rng)
              for i in point_ids]

    def targets(ids: np.ndarray) -> Tensor | None:
        return torch.from_numpy(masks[ids][:, None].astype(np.float32)) if len(ids) else None

    return PromptBatch(
        boxes=torch.from_numpy(np.stack(boxes) * scale) if boxes else None,
        points=torch.from_numpy(np.stack(points)[:, None] * scale) if points else None,
        box_targets=targets(box_ids),
        point_targets=targets(point_ids),
        box_labels=torch.from_numpy(labels[box_ids]) if len(box_ids) else None,
        point_labels=torch.from_numpy(labels[point_ids]) if len(point_ids) else None,
    )
