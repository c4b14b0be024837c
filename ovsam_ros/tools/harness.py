"""What the tools share to drive the node: start it as its own process (`NodeProcess`), talk to it
from a client node in this process (`ToolClient`: spin until something holds, wait for the node's
subscriptions, call its services, read its /diagnostics), and stop it politely. The demo, soak and
benchmarks use it, and so does the tests' NodeUnderTest (tests/ros/node_harness.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

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


class NodeExited(RuntimeError):
    """The node process ended while a tool was waiting on it."""


class NodeProcess:
    """`python -m <module> --ros-args -p name:=value ...` (ovsam_node by default), its output in a log
    file (or discarded)."""

    def __init__(self, parameters: Mapping[str, Any] | Sequence[str], *, env: dict[str, str] | None = None,
                 log_path: Path | None = None, module: str = "ovsam_ros.node", ros_args: Sequence[str] = ()) -> None:
        """`parameters`: a mapping, or already formatted NAME:=VALUE strings; `ros_args`: more of the
        node's --ros-args (e.g. ["-r", "__ns:=/front"])."""
        pairs = ([f"{name}:={value}" for name, value in parameters.items()] if isinstance(parameters, Mapping)
                 else list(parameters))
        command = [sys.executable, "-m", module, "--ros-args"]
        for pair in pairs:
            command += ["-p", pair]
        command += list(ros_args)
        self.log_path = log_path
        self._log: Any = open(log_path, "w") if log_path is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env or child_environment(), stdout=self._log,
                                        stderr=subprocess.STDOUT if log_path is not None else subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            where = f"; see {self.log_path}" if self.log_path is not None else ""
            raise NodeExited(f"ovsam_node exited with {self.process.returncode}{where}")

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None:
            return ""
        self._flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        stop_process(self.process)
        self._flush()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def _flush(self) -> None:
        if self._log is not subprocess.DEVNULL and not self._log.closed:
            self._log.flush()


class DiagnosticsReader:
    """The latest value of each key the node reports on /diagnostics (its status, named '<node>: ovsam')."""

    def __init__(self, node: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.values: dict[str, str] = {}
        self._lock = threading.Lock()
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if "ovsam" in status.name:
                with self._lock:
                    self.values.update((kv.key, kv.value) for kv in status.values)

    def latest(self) -> dict[str, str]:
        with self._lock:
            return dict(self.values)

    def number(self, key: str) -> float | None:
        try:
            return float(self.latest()[key])
        except (KeyError, ValueError):
            return None


class ToolClient:
    """A client node in this process, spun by the tool (spin_until, spin_for) or on a thread of its
    own (spin_in_background), with the node process it waits on."""

    def __init__(self, name: str, node_process: NodeProcess | None = None) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        # Not sys.argv: a tool's NAME:=VALUE options are for the node, not for this process.
        rclpy.init(args=[])
        self.node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.node_process = node_process
        self.diagnostics = DiagnosticsReader(self.node)
        self._spinner: threading.Thread | None = None
        self._closed = False

    def spin_until(self, condition: Callable[[], bool], timeout: float,
                   each_turn: Callable[[], None] | None = None) -> bool:
        """Spin until `condition()` holds (True) or `timeout` passes (False); NodeExited if the node
        process ends first. `each_turn` runs after every spin. While the client spins in the
        background, this only waits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.node_process is not None:
                self.node_process.check_alive()
            if self._spinner is None:
                self.executor.spin_once(timeout_sec=0.02)
            else:
                time.sleep(0.02)
            if each_turn is not None:
                each_turn()
            if condition():
                return True
        return False

    def spin_for(self, seconds: float, each_turn: Callable[[], None] | None = None) -> None:
        self.spin_until(lambda: False, seconds, each_turn)

    def wait_for_subscribers(self, publishers: Sequence[Any], timeout: float) -> bool:
        """Until the node subscribes to each of these publishers' topics."""
        return self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in publishers), timeout)

    def call_service(self, srv_type: Any, name: str, request: Any, timeout: float, retries: int = 2) -> Any:
        """Wait for the service, call it, and return its response (None if none came in time).

        A first request can be lost while DDS is still matching the reply channel (service_is_ready
        covers only the request side), so the call is re-sent up to `retries` times, each waiting 15 s
        but the last: use retries=0 for calls that must not be repeated."""
        client = self.node.create_client(srv_type, name)
        try:
            if not self.spin_until(client.service_is_ready, timeout):
                return None
            self.spin_for(0.2)
            for attempt in range(retries + 1):
                future = client.call_async(request)
                if self.spin_until(future.done, timeout if attempt == retries else 15.0):
                    return future.result()
                client.remove_pending_request(future)
            return None
        finally:
            self.node.destroy_client(client)

    def spin_in_background(self) -> None:
        """Spin on a thread of its own: callbacks' arrival times then do not wait for the tool's loop."""
        self._spinner = threading.Thread(target=self.executor.spin, name=f"{self.node.get_name()}-spin", daemon=True)
        self._spinner.start()

    def close(self) -> None:
        """Stop spinning and destroy the client node; a second call does nothing."""
        import rclpy

        if self._closed:
            return
        self._closed = True
        self.executor.shutdown()
        if self._spinner is not None:
            self._spinner.join(timeout=5)
        self.node.destroy_node()
        rclpy.try_shutdown()
