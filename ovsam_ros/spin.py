"""The node's entry points spin it here: one executor thread until Ctrl-C or shutdown."""
from __future__ import annotations

from typing import Any


def spin_until_shutdown(node: Any) -> None:
    """Spin `node` on a single-threaded executor until Ctrl-C or shutdown, then destroy it.

    Single-threaded on purpose: rclpy's MultiThreadedExecutor rebuilds its wait set in a hot loop while
    a callback group is busy, and under 60 Hz images plus 100 prompts/s that loop took a whole core
    and the GIL, so prompts waited seconds in DDS (tiny-model soak: latency p50 17.5 s; 109 ms
    single-threaded). The node's callbacks only convert and queue; its services are coroutines that
    await the inference thread instead of blocking the executor.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
