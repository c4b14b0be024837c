"""Isolation and start-up helpers for tests that start real rclpy processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]


def isolated_ros_environment() -> dict[str, str]:
    """Environment for this test run: its own DDS domain, discovery limited to this host."""
    from ovsam_ros.tools.harness import child_environment

    domain_id = int(os.environ.get("OVSAM_TEST_DOMAIN_ID", 1 + os.getpid() % 200))
    env = child_environment(domain_id)
    env["OVSAM_TEST_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return env


def apply_to_this_process() -> None:
    """Must run before rclpy.init() in the test process itself."""
    os.environ.update(isolated_ros_environment())


def start_python(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `python -m module args...` from the repository root in the isolated environment."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env or isolated_ros_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(process: subprocess.Popen, timeout: float = 10.0) -> str:
    """Stop a started process (SIGINT, then kill) and return what it printed."""
    from ovsam_ros.tools.harness import stop_process

    stop_process(process, timeout)
    output, _ = process.communicate()
    return output or ""


def spin_until(node, executor, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Spin `executor` until `condition()` holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        executor.spin_once(timeout_sec=0.05)
