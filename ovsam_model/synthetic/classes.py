"""The 42 classes of the shapes world ("<colour> <shape>") and their base/novel split."""
from __future__ import annotations

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (45, 85, 220),
    "yellow": (235, 215, 45),
    "purple": (140, 55, 180),
    "orange": (245, 135, 25),
    "white": (240, 240, 240),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")

# One novel pair per colour (but white) and per shape, so every colour word and every shape word
# is still seen in training, only never in these combinations.
NOVEL_CLASSES: tuple[str, ...] = (
    "red star",
    "green hexagon",
    "blue cross",
    "yellow circle",
    "purple square",
    "orange triangle",
)

CLASS_NAMES: tuple[str, ...] = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
BASE_CLASSES: tuple[str, ...] = tuple(name for name in CLASS_NAMES if name not in NOVEL_CLASSES)

_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}
BASE_INDICES: tuple[int, ...] = tuple(_INDEX[name] for name in BASE_CLASSES)
NOVEL_INDICES: tuple[int, ...] = tuple(_INDEX[name] for name in NOVEL_CLASSES)


def class_index(name: str) -> int:
    """Index of a class name in CLASS_NAMES."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"unknown class {name!r}; classes are '<colour> <shape>' with colours "
                       f"{', '.join(COLOURS)} and shapes {', '.join(SHAPES)}") from None


def is_novel(index: int) -> bool:
    return CLASS_NAMES[index] in NOVEL_CLASSES


def colour_and_shape(index: int) -> tuple[str, str]:
    colour, shape = CLASS_NAMES[index].split(" ")
    return colour, shape
