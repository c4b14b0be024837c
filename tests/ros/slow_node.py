"""ovsam_node with a deliberately slow or faulty model, for the overload and fault tests: the real
predictor (whatever the parameters name) with extra delays in image encoding and decoding, and,
with OVSAM_TEST_FAULTS=1, simulated out-of-memory errors: every batch of more than one prompt and
every third image encoding fail. With OVSAM_TEST_ENCODE_GATE=DIR, each image encoding creates
DIR/encoding and then waits (up to 300 s) until the test creates DIR/open: a test can hold a model
call for exactly as long as it needs, whatever the machine's load."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ovsam_ros.node import main
from ovsam_ros.node_wiring import default_predictor_factory

ENCODE_DELAY_S = float(os.environ.get("OVSAM_TEST_ENCODE_DELAY_S", "0.25"))
DECODE_DELAY_S = float(os.environ.get("OVSAM_TEST_DECODE_DELAY_S", "0.05"))
FAULTS = os.environ.get("OVSAM_TEST_FAULTS") == "1"
ENCODE_GATE = os.environ.get("OVSAM_TEST_ENCODE_GATE", "")


def wait_at_gate(gate: Path, limit_s: float = 300.0) -> None:
    (gate / "encoding").touch()
    deadline = time.monotonic() + limit_s
    while not (gate / "open").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


class SlowPredictor:
    def __init__(self, predictor) -> None:
        self._predictor = predictor
        self._encodes = 0

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def set_image(self, *args, **kwargs):
        time.sleep(ENCODE_DELAY_S)
        if ENCODE_GATE:
            wait_at_gate(Path(ENCODE_GATE))
        self._encodes += 1
        if FAULTS and self._encodes % 3 == 0:
            raise RuntimeError("CUDA out of memory (simulated) while encoding the image")
        return self._predictor.set_image(*args, **kwargs)

    def predict(self, prompts, *args, **kwargs):
        time.sleep(DECODE_DELAY_S)
        if FAULTS and len(prompts) > 1:
            raise RuntimeError("CUDA out of memory (simulated) for a batch of %d prompts" % len(prompts))
        return self._predictor.predict(prompts, *args, **kwargs)


def slow_predictor_factory(settings):
    return SlowPredictor(default_predictor_factory(settings))


if __name__ == "__main__":
    # By its import name: the inference process cannot import functions of __main__.
    from tests.ros.slow_node import slow_predictor_factory as factory

    sys.exit(main(predictor_factory=factory))
