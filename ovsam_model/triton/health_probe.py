"""What diagnostics show about an inference server: reachable?, models loaded?, how fast it answers.

Runs in the node process (torch-free, standard library only): the predictor may live in a child
process, so its own call statistics are not at hand there. A daemon thread asks the server's
KServe v2 health and model-ready endpoints every `period_s` and keeps the latest facts; reading
them never waits on the network.
"""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from ovsam_model.triton.names import all_models


def server_base_url(address: str) -> str:
    address = address.strip().rstrip("/")
    return address if address.startswith(("http://", "https://")) else f"http://{address}"


class ServerHealthProbe:
    def __init__(self, address: str, *, period_s: float = 2.0, timeout_s: float = 2.0) -> None:
        self.address = address
        self._base = server_base_url(address)
        self.period_s = period_s
        self.timeout_s = timeout_s
        self._facts = {"inference_server": address, "server_state": "not contacted yet", "server_latency": ""}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "ServerHealthProbe":
        self._thread = threading.Thread(target=self._run, name="inference-server-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s * (len(all_models()) + 2))

    def facts(self) -> dict[str, str]:
        with self._lock:
            return dict(self._facts)

    def probe_once(self) -> dict[str, str]:
        """Ask the server now; returns (and keeps) the facts."""
        started = time.perf_counter()
        facts = {"inference_server": self.address}
        if not self._ok("/v2/health/live"):
            facts.update(server_state="unreachable", server_latency="")
        else:
            latency = time.perf_counter() - started
            missing = [name for name in all_models() if not self._ok(f"/v2/models/{name}/ready")]
            state = "ready" if not missing else f"model not loaded: {', '.join(missing)}"
            facts.update(server_state=state, server_latency=f"{latency * 1000:.1f} ms")
        with self._lock:
            self._facts = facts
        return facts

    def _ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self._base + path, timeout=self.timeout_s) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self.period_s)
