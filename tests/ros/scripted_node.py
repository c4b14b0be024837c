"""ovsam_node with a scripted model, for tests that check the node's outputs against a known truth:
the mask of a box prompt is its box, and the prompt's id names its label and score as
"<label>@<score>" (anything after a '#' only keeps ids unique). A label in the vocabulary gets its
class_index there; any other label is an unrecognised instance (class_index -1, label "").
Everything else is tests.node.fake_predictor.FakePredictor's."""
from __future__ import annotations

import sys
from typing import Any

from ovsam_model.instances import InstancePrediction
from ovsam_ros.node import main
from tests.node.fake_predictor import FakePredictor


class ScriptedPredictor(FakePredictor):
    def _instance(self, prompt_id: str, box: tuple[int, int, int, int], height: int, width: int,
                  label: str | None = None) -> InstancePrediction:
        prediction = super()._instance(prompt_id, box, height, width, label)
        if "@" not in prompt_id:
            return prediction
        name, score_text = prompt_id.split("#")[0].split("@")
        names = list(self.vocabulary.names)
        class_index = names.index(name) if name in names else -1
        prediction.label, prediction.class_index = (name, class_index) if class_index >= 0 else ("", -1)
        prediction.score = float(score_text)
        prediction.top_labels, prediction.top_scores = [prediction.label], [prediction.score]
        prediction.top_indices = [class_index]
        return prediction


def scripted_predictor_factory(settings: Any) -> ScriptedPredictor:
    return ScriptedPredictor(("red star", "blue cross", "green circle"))


if __name__ == "__main__":
    # By its import name: the inference process cannot import functions of __main__.
    from tests.ros.scripted_node import scripted_predictor_factory as factory

    sys.exit(main(predictor_factory=factory))
