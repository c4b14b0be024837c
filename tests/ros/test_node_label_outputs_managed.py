"""The managed node (ovsam_lifecycle_node) as a real process: its latched `labels` go out when it
activates (its lifecycle publishers publish only while active), and a late subscriber gets them.
Apart from test_node_label_outputs.py: one test client per process, and that module's node lives
for all of its tests."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402

from tests.ros.node_harness import NodeUnderTest, make_tiny_weights  # noqa: E402
from tests.ros.test_node_label_outputs import latest_labels  # noqa: E402

pytestmark = pytest.mark.ros


def test_the_managed_node_publishes_its_labels_when_it_activates(tmp_path):
    """Its lifecycle publishers publish only while active: the labels set at configure go out on activate."""
    weights = make_tiny_weights(tmp_path, ["cup", "plate"])
    node = NodeUnderTest({"model": "ovsam-tiny", "weights_dir": str(weights)}, module="ovsam_ros.lifecycle_node")
    try:
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            response = node.call(ChangeState, "ovsam_node/change_state",
                                 ChangeState.Request(transition=Transition(id=transition)), retries=0)
            assert response.success, transition
        labels = latest_labels(node)
        assert (labels["vocabulary"], labels["version"], labels["classes"]) == ("default", 1, ["cup", "plate"])
    finally:
        node.close()
