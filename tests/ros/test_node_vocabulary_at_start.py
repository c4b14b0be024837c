"""The `vocabulary` parameter means the same at start-up as when changed at run time: "default" (with
or without blanks around it) is the model's own vocabulary, not a class-list file of that name, and a
file name is looked up in vocabulary_dirs. A real node process on a tiny model whose own vocabulary
is known."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from tests.ros.node_harness import NodeUnderTest, make_tiny_weights  # noqa: E402
from tests.ros.test_node_label_outputs import latest_labels, set_vocabulary_parameter  # noqa: E402

pytestmark = pytest.mark.ros


def test_a_node_started_with_the_default_vocabulary_names_the_models_own_classes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called "default" here, nor anywhere the node could read one
    weights = make_tiny_weights(tmp_path, ["cup", "plate"])
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(weights), "vocabulary": " default "})
    try:
        labels = latest_labels(node)
        assert (labels["vocabulary"], labels["classes"]) == ("default", ["cup", "plate"])
    finally:
        node.close()


def test_a_file_named_at_start_up_is_the_one_in_vocabulary_dirs_as_at_run_time(tmp_path, monkeypatch):
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    (allowed / "kitchen.txt").write_text("mug\nbowl\nspoon\n")
    (elsewhere / "kitchen.txt").write_text("hammer\n")  # the working directory's file of that name
    monkeypatch.chdir(elsewhere)
    weights = make_tiny_weights(tmp_path / "weights", ["cup", "plate"])
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(weights), "vocabulary": "kitchen.txt",
                          "vocabulary_dirs": str(allowed)})
    try:
        labels = latest_labels(node)
        assert (labels["vocabulary"], labels["classes"]) == (str(allowed / "kitchen.txt"), ["mug", "bowl", "spoon"])
        set_vocabulary_parameter(node, "  ")  # blanks at run time: the model's own, as at start-up
        labels = latest_labels(node, labels["version"])
        assert (labels["vocabulary"], labels["classes"]) == ("default", ["cup", "plate"])
    finally:
        node.close()
