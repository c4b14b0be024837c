"""From a service coroutine on the executor to the inference thread and back, without blocking the
executor: the coroutine is parked until the worker's result (or a timeout) arrives."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, Callable

from rclpy.task import Future as RclpyFuture

from .worker import InferenceWorker


async def on_inference_thread(worker: InferenceWorker, executor: Any, function: Callable[[], Any],
                              timeout_s: float) -> Any:
    """Await `function` run on the inference thread. The executor goes on taking images and prompts
    meanwhile; after `timeout_s` the caller gets TimeoutError (the call itself stays queued)."""
    done: RclpyFuture[Any] = RclpyFuture(executor=executor)
    # With a done callback, completing the future schedules it on the executor, which wakes the
    # executor's wait; it then resumes this coroutine.
    done.add_done_callback(lambda _: None)
    settle_lock = threading.Lock()

    def settle(result: Any = None, error: Exception | None = None) -> None:
        with settle_lock:
            if done.done():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

    def from_worker(work: Future) -> None:
        error = work.exception()
        if error is None:
            settle(result=work.result())
        else:  # the worker passes on Exceptions only; anything else still ends the wait
            settle(error=error if isinstance(error, Exception) else RuntimeError(repr(error)))

    worker.submit_call(function).add_done_callback(from_worker)
    timer = threading.Timer(timeout_s, settle, kwargs={"error": TimeoutError(
        f"no answer from the inference thread within service_timeout_s ({timeout_s:g} s)")})
    timer.daemon = True
    timer.start()
    try:
        return await done
    finally:
        timer.cancel()
