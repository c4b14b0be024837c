"""The one text-query parser that the node's topic, the Segment service, find() and the CLI share."""
from __future__ import annotations

import pytest

from ovsam_model.text_query import (
    MAX_QUERY_CHARS,
    MAX_QUERY_CLASSES,
    TextQueryError,
    canonical_class_name,
    parse_text_query,
)


def test_names_are_split_stripped_and_deduplicated() -> None:
    assert parse_text_query(" mug, screwdriver ,, mug") == ["mug", "screwdriver"]
    assert parse_text_query(["tennis racket", " cup "]) == ["tennis racket", "cup"]


def test_repeats_are_the_same_name_up_to_case_underscores_and_spacing() -> None:
    # Two entries for one class would split its probability between them.
    query = "Red circle, red circle, red_circle,  RED   circle, blue star"
    assert parse_text_query(query) == ["Red circle", "blue star"]
    assert parse_text_query(["tennis_racket", "Tennis racket"]) == ["tennis_racket"]


def test_each_string_of_a_list_is_a_comma_separated_query() -> None:
    # The Segment service's text_queries is a list; "mug, bottle" in one entry names two classes.
    assert parse_text_query(["mug, bottle", "cup", "mug"]) == ["mug", "bottle", "cup"]


@pytest.mark.parametrize("query", ["", " , ,", [], ["", " "]])
def test_an_empty_query_is_an_error_unless_allowed(query) -> None:
    with pytest.raises(TextQueryError, match="names no class"):
        parse_text_query(query)
    assert parse_text_query(query, allow_empty=True) == []


@pytest.mark.parametrize("query, message", [
    ("a" * (MAX_QUERY_CHARS + 1), f"at most {MAX_QUERY_CHARS}"),
    (["a" * 600, "b" * 600], f"at most {MAX_QUERY_CHARS}"),
    (",".join(f"c{i}" for i in range(MAX_QUERY_CLASSES + 1)), f"at most {MAX_QUERY_CLASSES} are allowed"),
    ("mug\x00", "control characters"),
    (["mug", 3], "must be strings"),
])
def test_bad_queries_say_what_is_wrong(query, message) -> None:
    with pytest.raises(TextQueryError, match=message):
        parse_text_query(query, allow_empty=True)


def test_limits_are_inclusive() -> None:
    assert len(parse_text_query(",".join(f"c{i}" for i in range(MAX_QUERY_CLASSES)))) == MAX_QUERY_CLASSES
    assert parse_text_query("a" * MAX_QUERY_CHARS) == ["a" * MAX_QUERY_CHARS]


def test_canonical_names_ignore_case_underscores_and_spacing() -> None:
    assert canonical_class_name("Tennis  racket") == canonical_class_name("tennis_racket") == "tennis racket"
