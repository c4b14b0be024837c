"""How a class name becomes the sentences that CLIP's text tower reads.

A class name such as ``tape_(sticky_cloth_or_paper)`` stands for one or more synonyms; each
synonym is placed into the 14 ViLD prompt templates. These two rules fix the released text
embeddings' layout (one row per synonym), so they must stay exactly as the published model
used them: changing either changes every class embedding.
"""
from __future__ import annotations

from typing import Iterator, Sequence

# The 14 prompt templates of ViLD (Gu et al., 2022), in the order the published model used them.
# The published embeddings average over all of them, so the set (not the order) is what matters.
VILD_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)


def split_synonyms(class_name: str) -> list[str]:
    """The synonyms a class name stands for, as the published LVIS embeddings were built.

    ``_or_`` and ``/`` separate alternatives like ``,`` does, ``_`` is a space, and case is
    dropped. Pieces that are empty after stripping are dropped (the published rule kept them,
    but no LVIS or COCO name produces one). The rule splits naively: LVIS's
    ``tape_(sticky_cloth_or_paper)`` becomes ``["tape (sticky cloth", "paper)"]``, which is
    exactly what the released embedding file holds, so it is kept for compatibility.
    """
    text = class_name.replace("_or_", ",").replace("/", ",").replace("_", " ").lower()
    return [piece.strip() for piece in text.split(",") if piece.strip()]


def fill_templates(synonym: str, templates: Sequence[str] = VILD_TEMPLATES) -> list[str]:
    """The sentences for one synonym, one per template."""
    return [template.format(synonym) for template in templates]


def iter_prompts(synonyms: Sequence[str], templates: Sequence[str] = VILD_TEMPLATES) -> Iterator[str]:
    """All sentences for a list of synonyms, synonym-major (``len(templates)`` per synonym).

    A generator, so a 20,000-class vocabulary never holds its ~300,000 sentences at once.
    """
    for synonym in synonyms:
        for template in templates:
            yield template.format(synonym)
