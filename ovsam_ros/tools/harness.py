"""Running ovsam_node and friends as processes: the environment they need from a source checkout,
and stopping them politely. Shared by the demo, soak and benchmark commands and the tests."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


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
