"""Open-Vocabulary SAM as a plain PyTorch library (no ROS).

Public names are imported lazily so that light users (the CLI's --help, config readers) do not
pay for importing torch and open_clip.
"""
from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    # Set from package.xml's <version> by setup.py (pip) and by ament_python_install_package (colcon).
    __version__ = metadata.version("ovsam_model")
except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "OVSAMConfig": "config",
    "ConfigError": "config",
    "get_config": "config",
    "list_configs": "config",
    "OVSAM": "modeling.ovsam",
    "ImageFeatures": "modeling.ovsam",
    "DecoderOutput": "modeling.ovsam",
    "build_model": "modeling.ovsam",
    "OVSAMPredictor": "predictor",
    "build_predictor": "build",
    "PromptSpec": "prompts",
    "InstancePrediction": "instances",
    "parse_text_query": "text_query",
    "CheckpointError": "checkpoint",
    "LoadReport": "checkpoint",
    "load_weights": "checkpoint",
    "save_official_layout": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ovsam_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
