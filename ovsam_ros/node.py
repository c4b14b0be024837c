"""`ovsam_node`: the plain node (loads the model and subscribes at start).

Run: `ros2 run ovsam_ros ovsam_node --ros-args --params-file config/ovsam.yaml`, or from a source
checkout `.venv/bin/python -m ovsam_ros.node --ros-args --params-file config/ovsam.yaml`.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import rclpy
from rclpy.node import Node

from ovsam_model.predictor_protocol import Predictor

from .node_wiring import NodeWiring
from .settings import NodeSettings
from .spin import spin_until_shutdown


class OVSAMNode(Node):
    def __init__(self, predictor_factory: Callable[[NodeSettings], Predictor] | None = None,
                 **node_kwargs: Any) -> None:
        super().__init__("ovsam_node", **node_kwargs)
        # predictor_factory(settings) -> predictor: tests and embedders may supply their own model.
        self.wiring = NodeWiring(self, predictor_factory)
        self.wiring.configure()
        self.wiring.activate()

    def destroy_node(self) -> None:
        self.wiring.cleanup()
        super().destroy_node()


def main(argv: Sequence[str] | None = None,
         predictor_factory: Callable[[NodeSettings], Predictor] | None = None) -> int:
    rclpy.init(args=list(argv) if argv is not None else sys.argv)
    try:
        node = OVSAMNode(predictor_factory)
    except Exception as error:  # noqa: BLE001 - a configuration error is a message, not a traceback
        print(f"ovsam_node: cannot start: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    print("ovsam_node ready", flush=True)
    spin_until_shutdown(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
