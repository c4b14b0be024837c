"""Running ovsam_node and friends as processes: the environment they need from a source checkout,
stopping them politely, and spinning a node until shutdown. Shared by the node's entry points and
the demo, soak and benchmark commands."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def child_environment(domain_id: int | None = None) -> dict[str, str]:
    """This environment plus the source tree on PYTHONPATH and discovery kept on this host."""
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT (the node shuts down cleanly), then kill if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(2)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
