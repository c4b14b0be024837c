"""Where ovsam_ros keeps what it computes once and reuses: encoded vocabularies, ONNX exports,
TensorRT engines, each in its own folder under one root.

The root is $OVSAM_CACHE_DIR when set, else $XDG_CACHE_HOME/ovsam_ros, else ~/.cache/ovsam_ros.
"""
from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "OVSAM_CACHE_DIR"


def cache_root() -> Path:
    """The root folder of all of ovsam_ros's caches (see the module docstring)."""
    root = os.environ.get(CACHE_DIR_ENV)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ovsam_ros"
