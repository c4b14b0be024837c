"""Start the Triton server that the `nvidia-pytriton` wheel bundles, on this machine (tests, benchmarks).

`scripts/setup-triton` builds `.triton-venv`: a venv on a Python 3.11 with a shared libpython
(Debian's /usr/bin/python3.11), because the wheel's Python-backend stub loads that library; the
pyenv/uv-style static Pythons cannot host it. The stub's interpreter ignores PYTHONPATH, so the
repository's model.py files add PYTHONPATH themselves; here it is, in this order:
1. the project's source tree (ovsam_model),
2. .triton-venv's site-packages: numpy 1.x, which the stub's compiled helpers were built against
   (with numpy 2 every output tensor arrives empty),
3. the site-packages of the Python running this module (the project's .venv: torch, open_clip,
   segment-anything; the same CPython 3.11 ABI), so torch is not installed twice.
On a GPU server use NVIDIA's container instead (docs/triton.md).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TRITON_VENV_VARIABLE = "OVSAM_TRITON_VENV"
DEFAULT_TRITON_VENV = PROJECT_ROOT / ".triton-venv"


class TritonServerError(RuntimeError):
    """The bundled server is not installed, did not start, or did not become ready; says why."""


def triton_venv() -> Path:
    return Path(os.environ.get(TRITON_VENV_VARIABLE) or DEFAULT_TRITON_VENV)


def server_home(venv: Path | None = None) -> Path:
    """pytriton's tritonserver directory (bin/, backends/) inside the Triton venv."""
    venv = venv or triton_venv()
    homes = sorted(venv.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    if not homes or not (homes[0] / "bin" / "tritonserver").is_file():
        raise TritonServerError(f"no Triton server in {venv}; run scripts/setup-triton (or set {TRITON_VENV_VARIABLE})")
    if not (homes[0] / "backends" / "python" / "triton_python_backend_stub").is_file():
        raise TritonServerError(f"{homes[0]} lacks the Python-backend stub; rerun scripts/setup-triton")
    return homes[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_python_path(venv: Path | None = None) -> str:
    home = server_home(venv)
    triton_site = home.parents[1]
    own_site = Path(sysconfig.get_paths()["purelib"])
    return os.pathsep.join(str(path) for path in (PROJECT_ROOT, triton_site, own_site))


class LocalTritonServer:
    """One tritonserver process serving `repository` on localhost; a context manager.

    Ports are fixed once chosen, so a server restarted with `start()` after `kill()` is found by
    clients at the same address."""

    def __init__(self, repository: str | Path, *, http_port: int | None = None, log_path: str | Path | None = None,
                 venv: Path | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.repository = Path(repository)
        self.extra_args = tuple(extra_args)  # e.g. ("--model-control-mode=explicit", "--load-model=*")
        self.venv = venv
        self.http_port = http_port or free_port()
        self.grpc_port = free_port()
        self.log_path = Path(log_path) if log_path else None
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"localhost:{self.http_port}"

    def command(self) -> list[str]:
        home = server_home(self.venv)
        return [str(home / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                f"--backend-directory={home / 'backends'}", f"--http-port={self.http_port}",
                f"--grpc-port={self.grpc_port}", "--allow-metrics=false", "--exit-timeout-secs=5", *self.extra_args]

    def start(self, ready_timeout_s: float = 300.0) -> "LocalTritonServer":
        if self._process is not None and self._process.poll() is None:
            raise TritonServerError(f"the server on {self.url} is already running")
        environment = dict(os.environ, PYTHONPATH=server_python_path(self.venv))
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            # A session of its own: kill() ends the server and its Python-backend stubs together.
            self._process = subprocess.Popen(self.command(), env=environment, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        self.wait_ready(ready_timeout_s)
        return self

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2.0) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise TritonServerError(f"the Triton server exited (code {code}) before it was ready; "
                                        f"see {self.log_path or 'its log (pass log_path)'}")
            if self.is_ready():
                return
            time.sleep(0.5)
        self.stop()
        raise TritonServerError(f"the Triton server on {self.url} was not ready within {timeout_s:g} s")

    def kill(self) -> None:
        """End the server at once (SIGKILL to its process group), as a crash would."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after 15 s)."""
        if self._signal(signal.SIGTERM):
            try:
                assert self._process is not None
                self._process.wait(15.0)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> bool:
        process = self._process
        if process is None or process.poll() is not None:
            return False
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:
            return False
        if number == signal.SIGKILL:
            process.wait()
        return True

    def __enter__(self) -> "LocalTritonServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
