"""`ovsam-model`: the command-line face of the model library.

Each sub-command lives in its own module under `ovsam_model.commands` and exposes
`register(subparsers)`; the module is imported lazily so `ovsam-model --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# name -> module under ovsam_model.commands
COMMANDS: dict[str, str] = {
    "vocab": "vocab",
    "load-check": "load_check",
    "download": "download",
    "segment": "segment",
    "bench": "bench",
    "export-onnx": "export",
    "train": "train",
    "eval": "eval",
    "triton-repo": "triton_repo",
    "triton-serve": "triton_serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ovsam-model",
        description="Open-Vocabulary SAM without ROS: check weights, build vocabularies, segment images.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"ovsam_model.commands.{module_name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
