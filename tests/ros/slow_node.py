"""ovsam_node with a deliberately slow model, for the overload tests: the real predictor (whatever
the parameters name) with extra delays in image encoding and decoding."""
from __future__ import annotations

import os
import sys
import time

from ovsam_ros.node import main
from ovsam_ros.node_core import default_predictor_factory

ENCODE_DELAY_S = float(os.environ.get("OVSAM_TEST_ENCODE_DELAY_S", "0.25"))
DECODE_DELAY_S = float(os.environ.get("OVSAM_TEST_DECODE_DELAY_S", "0.05"))


class SlowPredictor:
    def __init__(self, predictor) -> None:
        self._predictor = predictor

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def set_image(self, *args, **kwargs):
        time.sleep(ENCODE_DELAY_S)
        return self._predictor.set_image(*args, **kwargs)

    def predict(self, *args, **kwargs):
        time.sleep(DECODE_DELAY_S)
        return self._predictor.predict(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main(predictor_factory=lambda settings: SlowPredictor(default_predictor_factory(settings))))
