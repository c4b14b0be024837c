"""`ovsam_lifecycle_node`: the managed variant. configure loads the model and creates the (lifecycle)
publishers and the services, activate subscribes and starts publishing, deactivate unsubscribes and
stops publishing, cleanup releases the model, publishers and services. A configure that fails (missing or corrupt
checkpoint) returns FAILURE with the reason logged, and the node stays up, unconfigured."""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ovsam_model.predictor_protocol import Predictor

from .node_wiring import NodeWiring
from .settings import NodeSettings
from .spin import spin_until_shutdown


class OVSAMLifecycleNode(LifecycleNode):
    def __init__(self, predictor_factory: Callable[[NodeSettings], Predictor] | None = None,
                 **node_kwargs: Any) -> None:
        super().__init__("ovsam_node", **node_kwargs)
        # predictor_factory(settings) -> predictor: tests and embedders may supply their own model.
        self.wiring = NodeWiring(self, predictor_factory, managed=True)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.wiring.configure()
        except Exception as error:  # noqa: BLE001
            self.get_logger().error(f"configure failed: {error}")
            self.wiring.health.problem(f"configure failed: {error}")
            self.wiring.cleanup()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Publishers first (the base class activates them): activate publishes the latched labels,
        # and an answer to the first input must not meet an inactive publisher.
        result = super().on_activate(state)
        self.wiring.activate()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.wiring.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.wiring.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.wiring.cleanup()
        return TransitionCallbackReturn.SUCCESS


def main(argv: Sequence[str] | None = None) -> int:
    rclpy.init(args=list(argv) if argv is not None else sys.argv)
    node = OVSAMLifecycleNode()
    print("ovsam_lifecycle_node ready (unconfigured)", flush=True)
    spin_until_shutdown(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
