"""A seeded synthetic world of coloured shapes: the data the shipped `ovsam-shapes` model learns from."""
from ovsam_model.synthetic.classes import (
    BASE_CLASSES,
    CLASS_NAMES,
    COLOURS,
    NOVEL_CLASSES,
    SHAPES,
    class_index,
    is_novel,
)
from ovsam_model.synthetic.scenes import Scene, SceneSet, generate_scene, generate_scene_set

__all__ = [
    "BASE_CLASSES",
    "CLASS_NAMES",
    "COLOURS",
    "NOVEL_CLASSES",
    "SHAPES",
    "Scene",
    "SceneSet",
    "class_index",
    "generate_scene",
    "generate_scene_set",
    "is_novel",
]
