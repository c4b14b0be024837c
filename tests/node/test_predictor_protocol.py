"""The typed seam: OVSAMPredictor, the inference process and the tests' fake all offer what the
Predictor protocol names, with calls the protocol's callers can make; the protocol stays torch-free."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import ovsam_model
from ovsam_model.predictor_protocol import PREDICTOR_METHODS, PREDICTOR_PROPERTIES, Predictor
from ovsam_ros import predictor_process
from ovsam_ros.predictor_process import PredictorProcess
from tests.node.fake_predictor import FakePredictor

MODEL_DIR = Path(ovsam_model.__file__).parent


def implementations() -> list[type]:
    from ovsam_model import OVSAMPredictor

    return [OVSAMPredictor, PredictorProcess, FakePredictor]


def test_the_protocol_lists_what_the_engine_calls():
    assert set(PREDICTOR_METHODS) == {"set_image", "set_images", "has_image", "predict", "find", "set_vocabulary"}
    assert set(PREDICTOR_PROPERTIES) == {"device", "vocabulary", "default_vocabulary"}
    # The inference process forwards exactly the protocol's methods.
    assert predictor_process.FORWARDED == PREDICTOR_METHODS


@pytest.mark.parametrize("method", PREDICTOR_METHODS)
def test_every_implementation_accepts_the_protocol_calls(method):
    expected = inspect.signature(getattr(Predictor, method))
    # A call as the protocol's callers make it: every parameter, each by its own kind.
    args, kwargs = [], {}
    for name, parameter in list(expected.parameters.items())[1:]:
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[name] = object()
        else:
            args.append(object())
    for implementation in implementations():
        signature = inspect.signature(getattr(implementation, method))
        signature.bind(object(), *args, **kwargs)  # raises TypeError where a call would fail


def test_every_implementation_has_the_protocol_properties():
    for implementation in implementations():
        init_source = inspect.getsource(implementation.__init__)
        for name in PREDICTOR_PROPERTIES:
            # A property, or an attribute every instance gets in __init__.
            is_property = isinstance(inspect.getattr_static(implementation, name, None), property)
            assigned = re.search(rf"self\.{name}\s*(:[^=]+)?=", init_source) is not None
            assert is_property or assigned, (implementation, name)


def test_the_protocol_and_its_result_types_import_without_torch():
    for module in ("predictor_protocol.py", "instances.py", "prompts.py"):
        tree = ast.parse((MODEL_DIR / module).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "torch" not in imported, module
