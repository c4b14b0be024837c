"""The predictor in a child process, behind the calls PerceptionEngine makes.

Why: in one process the inference thread and the ROS executor share Python's GIL. Under load the
executor got it too rarely to take the prompt messages and they queued in DDS, so answers came
seconds late although the node's own queue was short. With the model in its own process, the node
process only converts messages and waits on a pipe (which releases the GIL).

The child is a fresh interpreter (`python -m ovsam_ros.predictor_process`): a fork would copy the
parent's threads and CUDA state, and multiprocessing's `spawn` re-runs the parent's main script,
which an installed ROS entry point does not guard. It talks over a socket pair, ignores SIGINT (Ctrl-C
in `ros2 launch` reaches the whole process group; the parent decides when it ends) and exits when its
parent is gone. If it dies (killed by the OOM killer, a crash in native code), the
call in progress raises PredictorProcessError and the next call starts a new child with the same
vocabulary; its feature cache starts empty.
"""
from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from ovsam_model.instances import InstancePrediction
from ovsam_model.predictor_protocol import PREDICTOR_METHODS, Predictor
from ovsam_model.prompts import PromptSpec

# The protocol's methods, and nothing else, are forwarded to the child.
FORWARDED = PREDICTOR_METHODS
PARENT_CHECK_S = 1.0


class PredictorProcessError(RuntimeError):
    """The inference process failed to start, died, or did not answer in time."""


@dataclass(frozen=True)
class VocabularyNames:
    """What the node needs of a vocabulary that lives in the child: its class names (no embeddings)."""

    names: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class _PackedMask:
    shape: tuple[int, int]
    bits: np.ndarray


def _pack(value: Any) -> Any:
    # Masks are (H, W) bool: bit-packed they cross the pipe 8x smaller.
    if isinstance(value, list):
        return [_pack(v) for v in value]
    mask = getattr(value, "mask", None)
    if isinstance(mask, np.ndarray) and mask.dtype == bool and mask.ndim == 2:
        return replace(value, mask=_PackedMask(mask.shape, np.packbits(mask)))
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    mask = getattr(value, "mask", None)
    if isinstance(mask, _PackedMask):
        count = mask.shape[0] * mask.shape[1]
        return replace(value, mask=np.unpackbits(mask.bits, count=count).astype(bool).reshape(mask.shape))
    return value


def _portable_error(error: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError with its type and text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}")


def _serve(connection: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    try:
        factory, settings, vocabulary = connection.recv()
        predictor: Predictor = factory(settings)
        if vocabulary is not None:
            predictor.set_vocabulary(vocabulary)
        connection.send(("ready", {"device": str(getattr(predictor, "device", "")),
                                   "vocabulary_names": tuple(predictor.vocabulary.names),
                                   "default_vocabulary": str(getattr(predictor, "default_vocabulary", ""))}))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it in configure
        try:
            connection.send(("error", _portable_error(error)))
        except OSError:
            pass  # the parent is gone
        return
    while True:
        if not connection.poll(PARENT_CHECK_S):
            if os.getppid() != parent:
                return
            continue
        try:
            method, args, kwargs = connection.recv()
        except (EOFError, OSError):
            return
        if method == "close":
            return
        try:
            result = getattr(predictor, method)(*args, **kwargs)
            if method == "set_vocabulary":
                result = VocabularyNames(tuple(result.names))
            connection.send(("ok", _pack(result)))
        except Exception as error:  # noqa: BLE001 - every failure is the caller's answer
            connection.send(("error", _portable_error(error)))


class PredictorProcess:
    """A Predictor (ovsam_model.predictor_protocol) answered by a child process running `factory(settings)`.

    `factory` and `settings` must pickle (a module-level function, a dataclass). One request and its
    answer at a time share the pipe: `_lock` keeps them paired. The model calls come from the inference
    thread alone, but close() comes from the executor's, possibly while a call is still in progress.
    """

    def __init__(self, factory: Callable[[Any], Predictor], settings: Any, *, start_timeout_s: float = 600.0,
                 call_timeout_s: float = 600.0) -> None:
        try:
            if getattr(factory, "__module__", None) == "__main__":
                raise ValueError(f"{getattr(factory, '__qualname__', factory)} is defined in the __main__ module, "
                                 "which the inference process does not run")
            pickle.dumps((factory, settings))
        except Exception as error:  # noqa: BLE001
            raise PredictorProcessError(
                f"the predictor factory cannot be sent to the inference process ({error}): use a module-level "
                "function of an importable module, or set the parameter inference_process to false") from None
        self._factory, self._settings = factory, settings
        self.start_timeout_s, self.call_timeout_s = start_timeout_s, call_timeout_s
        self._lock = threading.Lock()
        self._process: Any = None
        self._connection: Any = None
        self._vocabulary_spec: Any = None
        self.restarts = 0
        self._info: dict[str, Any] = {}
        self._start()

    # -- what the engine reads -------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self._info["device"]

    @property
    def vocabulary(self) -> VocabularyNames:
        return VocabularyNames(self._info["vocabulary_names"])

    @property
    def default_vocabulary(self) -> str | Path:
        return self._info["default_vocabulary"]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def set_image(self, image: np.ndarray, key: Hashable | None = None, *, cache_group: str = "") -> Hashable:
        return self._call("set_image", image, key=key, cache_group=cache_group)

    def set_images(self, images: Sequence[np.ndarray], keys: Sequence[Hashable | None] | None = None, *,
                   cache_groups: Sequence[str] | None = None) -> list[Hashable]:
        return self._call("set_images", list(images), keys=None if keys is None else list(keys),
                          cache_groups=None if cache_groups is None else list(cache_groups))

    def has_image(self, key: Hashable) -> bool:
        return self._call("has_image", key)

    def predict(self, prompts: Sequence[PromptSpec], key: Hashable | None = None, *,
                top_k: int = 5) -> list[InstancePrediction]:
        return self._call("predict", list(prompts), key=key, top_k=top_k)

    def find(self, queries: Sequence[str], key: Hashable | None = None, *, top_k: int = 5,
             max_instances: int = 100, points_per_side: int = 16,
             score_threshold: float = 0.0) -> list[InstancePrediction]:
        return self._call("find", list(queries), key=key, top_k=top_k, max_instances=max_instances,
                          points_per_side=points_per_side, score_threshold=score_threshold)

    def set_vocabulary(self, spec: str | list[str]) -> VocabularyNames:
        result = self._call("set_vocabulary", spec)
        # Kept so that a restarted child comes back with the vocabulary the user chose.
        self._vocabulary_spec = spec
        self._info["vocabulary_names"] = result.names
        return result

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stop_child(timeout)

    # -- the child -------------------------------------------------------------------------------
    def _start(self) -> None:
        parent_end, child_end = socket.socketpair()
        env = dict(os.environ)
        # The child imports the factory by name: it needs this process's import path.
        env["PYTHONPATH"] = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
        with parent_end, child_end:
            process = subprocess.Popen([sys.executable, "-m", "ovsam_ros.predictor_process", str(child_end.fileno())],
                                       pass_fds=(child_end.fileno(),), env=env)
            connection = Connection(os.dup(parent_end.fileno()))
        self._process, self._connection = process, connection
        try:
            connection.send((self._factory, self._settings, self._vocabulary_spec))
        except OSError:
            pass  # the child is already gone: _receive says how it ended
        status, payload = self._receive("start", self.start_timeout_s)
        if status == "error":
            self._stop_child(1.0)
            raise payload
        self._info = payload

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method not in FORWARDED:
            raise AttributeError(method)
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._restart()
            try:
                self._connection.send((method, args, kwargs))
            except (OSError, ValueError) as error:
                self._stop_child(1.0)
                raise PredictorProcessError(
                    f"the inference process is gone ({error}); it restarts on the next call") from None
            status, payload = self._receive(method, self.call_timeout_s)
        if status == "error":
            raise payload
        return _unpack(payload)

    def _receive(self, what: str, timeout: float) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._connection.poll(0.5):
                    return self._connection.recv()
            except (EOFError, OSError):
                break  # the pipe closed: the child is gone, or going
            if self._process.poll() is not None or time.monotonic() > deadline:
                break
        try:
            code = self._process.wait(2.0)
        except subprocess.TimeoutExpired:
            code = None
        self._stop_child(1.0)
        if code is None:
            raise PredictorProcessError(f"the inference process did not answer '{what}' within {timeout:.0f} s; "
                                        "it was stopped and restarts on the next call")
        raise PredictorProcessError(f"the inference process exited (code {code}) during '{what}'"
                                    + ("" if what == "start" else "; it restarts on the next call"))

    def _restart(self) -> None:
        self._stop_child(1.0)
        self.restarts += 1
        self._start()

    def _stop_child(self, timeout: float) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            try:
                connection.send(("close", (), {}))
            except (OSError, ValueError):
                pass
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if connection is not None:
            connection.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self._stop_child(1.0)
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    # Through the module's import name, so that what the child pickles (VocabularyNames, packed masks)
    # names ovsam_ros.predictor_process, not __main__.
    from ovsam_ros.predictor_process import _serve as serve

    serve(Connection(int(sys.argv[1])))
