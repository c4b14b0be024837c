"""`ovsam-model load-check`: verify a weights directory against a model configuration.

    ovsam-model load-check --weights DIR [--clip-weights FILE] [--model NAME] [--non-strict]

Every role's file is checked (not just up to the first failure), so one run lists all problems.
Exit status 0 when all files load strictly, 1 when any file is missing or mismatched.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("load-check", help="check that a weights directory loads into a model")
    parser.add_argument("--weights", required=True, help="directory with the model's weight files")
    parser.add_argument("--clip-weights", default=None, help="CLIP weights file, if not in --weights")
    parser.add_argument(
        "--model", default="ovsam-rn50x16", help="configuration name or JSON file (default: ovsam-rn50x16)"
    )
    parser.add_argument(
        "--non-strict", action="store_true", help="load what matches and list the rest instead of failing on it"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ovsam_model.checkpoint import CheckpointError, load_role
    from ovsam_model.config import ConfigError
    from ovsam_model.modeling.ovsam import build_model
    from ovsam_model.weight_files import ROLE_LAYOUTS

    try:
        model = build_model(args.model)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    weights_dir = Path(args.weights)
    print(f"model {model.config.name}: {sum(p.numel() for p in model.state_dict().values()):,} "
          "values in its state dict")
    print(f"weights directory {weights_dir}")
    failures = 0
    total = 0
    for layout in ROLE_LAYOUTS:
        if layout.role == "clip" and args.clip_weights:
            path = Path(args.clip_weights)
        else:
            path = weights_dir / model.config.weight_files[layout.role]
        try:
            loaded = load_role(model, layout.role, path, strict=not args.non_strict)
        except CheckpointError as error:
            failures += 1
            print(f"FAIL {layout.role:<15} {error}", file=sys.stderr)
            continue
        total += loaded.parameters_loaded
        status = "ok  " if not (loaded.missing_keys or loaded.unexpected_keys or loaded.mismatched_keys) else "PART"
        if status == "PART":
            failures += 1
        print(f"{status} {loaded.describe()}")
    print(f"values loaded: {total:,}")
    if failures:
        print(f"{failures} weight file(s) failed to load into {model.config.name}", file=sys.stderr)
        return 1
    print("all weight files load strictly")
    return 0
