"""The held-out set of the evaluation."""
from __future__ import annotations

from ovsam_model.synthetic.classes import BASE_INDICES, NOVEL_INDICES
from ovsam_model.synthetic.scenes import SceneSet, generate_scene_set

# Training derives its streams from (run seed, stream id) pairs; this single integer seeds no
# training stream, so the held-out scenes are never seen in training.
HELD_OUT_SEED = 20_241_125
# With novel classes as likely as base ones (see balanced_class_pool), 640 scenes hold ~2,200
# instances, over 1,000 of them novel: enough for a novel-accuracy interval of about +-0.03.
DEFAULT_HELD_OUT_SCENES = 640


def balanced_class_pool() -> list[int]:
    """Class indices to draw objects from uniformly, so that an object is novel with probability 1/2.

    Drawn uniformly over the 42 classes only 1 object in 7 would be novel and a novel figure would
    need ~2,000 scenes; each novel class is listed as often as it takes to balance the two splits."""
    repeats = len(BASE_INDICES) // len(NOVEL_INDICES)
    return list(BASE_INDICES) + [index for index in NOVEL_INDICES for _ in range(repeats)]


def held_out_scenes(num_scenes: int = DEFAULT_HELD_OUT_SCENES, seed: int = HELD_OUT_SEED) -> SceneSet:
    """Fresh 256x256 scenes over all 42 classes, half of their objects novel."""
    return generate_scene_set(num_scenes, seed=seed, size=256, classes=balanced_class_pool())
