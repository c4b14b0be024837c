"""`ovsam-model eval`: the paper's comparison on a fresh held-out synthetic set, in one run.

    ovsam-model eval [--model ovsam-shapes] [--weights DIR] [--scenes N] [--seed S] [--json OUT]
                     [--no-baseline] [--threads N]

Box-prompt and point-prompt mIoU (point = distance-transform centre of the ground-truth mask) and
recognition accuracy, each for base and novel classes, with 95 % bootstrap intervals, of OV-SAM
with and without the CLIP-branch mixing, and of the paper's two baselines on the teacher SAM's
masks: the image crop (CLIP's image tower on a crop) and the feature crop (RoIAlign on CLIP's last
stage of the whole image, CLIP's attention pool). Prints a table; --json writes the figures with the
stable keys box_miou, point_miou, acc_base, acc_novel, point_acc_base, point_acc_novel (fractions,
OV-SAM as configured), n_instances, n_novel, intervals, head_only / clip_branch (both OV-SAM
variants) and baselines.image_crop / baselines.feature_crop (each with acc_base, acc_novel,
box_miou, ...).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from ovsam_model.evaluation import DEFAULT_HELD_OUT_SCENES, HELD_OUT_SEED

    parser = subparsers.add_parser("eval", help="evaluate a shapes-world model on held-out scenes (mIoU, accuracy)")
    parser.add_argument("--model", default="ovsam-shapes", help="model configuration (default: ovsam-shapes)")
    parser.add_argument("--weights", default=None, help="weights directory (default: the shipped weights)")
    parser.add_argument("--scenes", type=int, default=DEFAULT_HELD_OUT_SCENES,
                        help=f"held-out scenes (default {DEFAULT_HELD_OUT_SCENES})")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED,
                        help="held-out seed (default: never used in training)")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the two baselines (image crop, feature crop) on the teacher SAM's masks")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ovsam_model.build import shipped_weights_dir
    from ovsam_model.checkpoint import CheckpointError, load_weights
    from ovsam_model.config import ConfigError, get_config
    from ovsam_model.evaluation import evaluate, format_table, held_out_scenes, load_teacher_file
    from ovsam_model.modeling.ovsam import build_model
    from ovsam_model.synthetic.classes import CLASS_NAMES
    from ovsam_model.vocabulary import UnknownClassError, load_vocabulary_file

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.scenes < 1:
        print("error: --scenes must be at least 1", file=sys.stderr)
        return 2
    try:
        config = get_config(args.model)
        weights = Path(args.weights) if args.weights else shipped_weights_dir(config.name)
        model = build_model(config)
        load_weights(model, weights)
    except (ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    vocabulary_file = weights / config.weight_files.get("vocabulary", "vocabulary.pt")
    if not vocabulary_file.is_file():
        print(f"error: {vocabulary_file} is missing: the shapes vocabulary ships beside the weights", file=sys.stderr)
        return 1
    try:
        text = load_vocabulary_file(vocabulary_file).subset(CLASS_NAMES).embeddings
    except UnknownClassError as error:
        print(f"error: {vocabulary_file} lacks a shapes class: {error}", file=sys.stderr)
        return 1
    teacher = None if args.no_baseline else load_teacher_file(config, weights / config.weight_files["prompt_encoder"])
    result = evaluate(model, text, held_out_scenes(args.scenes, args.seed), teacher=teacher)
    result.update({"model": config.name, "weights": str(weights), "seed": args.seed,
                   "threads": torch.get_num_threads()})
    print(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0
