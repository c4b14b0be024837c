"""What a typed text query ("mug, screwdriver") names: the one parser for every entry point.

The `text_query` topic, the Segment service's `text_queries`, `OVSAMPredictor.find` and the CLI's
`--text` all read queries through `parse_text_query`, so one query means the same classes
everywhere.

Rules: a query is a string or a sequence of strings; each string is a comma-separated list of class
names. Names are stripped of surrounding white space, empty pieces are dropped, and repeats are
dropped keeping the first spelling (a repeat is the same name as `canonical_class_name` sees it:
"Mug", "mug" and "mug " are one class, which two entries would split the score of). A query is typed
by a person, so it is bounded: at most MAX_QUERY_CHARS characters in all and MAX_QUERY_CLASSES names
(a vocabulary belongs in set_vocabulary), and control characters are refused. A query naming no
class is an error unless the caller allows it (the node's `text_query` topic, where an empty string
clears the query). Every violation raises TextQueryError (a ValueError) whose message says what to
change.
"""
from __future__ import annotations

from typing import Iterable, Sequence

MAX_QUERY_CHARS = 1000
MAX_QUERY_CLASSES = 100


class TextQueryError(ValueError):
    """A text query that cannot be used; the message says why."""


def parse_text_query(queries: str | Sequence[str], *, allow_empty: bool = False) -> list[str]:
    """The class names of a query: "mug, bottle" or ["mug", "bottle"] -> ["mug", "bottle"]."""
    pieces = [queries] if isinstance(queries, str) else list(queries)
    if any(not isinstance(piece, str) for piece in pieces):
        raise TextQueryError("text queries must be strings")
    total = sum(len(piece) for piece in pieces)
    if total > MAX_QUERY_CHARS:
        raise TextQueryError(f"the text query is {total} characters long; at most {MAX_QUERY_CHARS} are allowed")
    names = [name.strip() for piece in pieces for name in piece.split(",")]
    names = first_of_each_class(name for name in names if name)
    if any(not name.isprintable() for name in names):
        raise TextQueryError("the text query contains control characters")
    if len(names) > MAX_QUERY_CLASSES:
        raise TextQueryError(f"the text query names {len(names)} classes; at most {MAX_QUERY_CLASSES} are allowed")
    if not names and not allow_empty:
        raise TextQueryError("the text query names no class; give e.g. 'mug, bottle'")
    return names


def first_of_each_class(names: Iterable[str]) -> list[str]:
    """`names` without repeats of a class (as `canonical_class_name` sees it), each class's first
    spelling kept, in order."""
    unique: dict[str, str] = {}
    for name in names:
        unique.setdefault(canonical_class_name(name), name)
    return list(unique.values())


def canonical_class_name(name: str) -> str:
    """The form under which a typed name matches a vocabulary entry, ignoring case, '_' vs ' ' and
    repeated spaces: LVIS writes "tennis_racket", people type "Tennis racket"."""
    return " ".join(name.replace("_", " ").lower().split())
