"""`ovsam-model vocab`: build a vocabulary's text embeddings with a model, or inspect a file.

    ovsam-model vocab build --model NAME --weights DIR --classes lvis|coco|FILE [--out FILE]
    ovsam-model vocab show FILE [--classes lvis|coco|FILE] [--limit N] [--find NAME]

`build` always fills the on-disk cache the node reads (so the node starts without encoding);
`--out` also writes a vocabulary file that can be shipped next to the weights.
"""
from __future__ import annotations

import argparse
import sys

from ovsam_model.text_prompts import split_synonyms
from ovsam_model.vocabulary import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CLASSES,
    UnknownClassError,
    Vocabulary,
    VocabularyError,
    load_embedding_file,
    load_vocabulary,
    load_vocabulary_file,
    save_vocabulary,
    text_model_key,
    vocabulary_cache_path,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("vocab", help="build or inspect open-vocabulary text embeddings")
    actions = parser.add_subparsers(dest="vocab_command", metavar="ACTION")
    actions.required = True

    build = actions.add_parser("build", help="encode a class list with a model's CLIP text tower")
    build.add_argument("--model", required=True, help="model configuration name (see ovsam_model/model_configs)")
    build.add_argument("--weights", required=True, help="directory with the model's weight files")
    build.add_argument("--clip-weights", default=None, help="CLIP weights file, if not in --weights")
    build.add_argument("--classes", required=True, help="'lvis', 'coco', or a text file with one class per line")
    build.add_argument("--out", default=None, help="also write the vocabulary to this file (torch format)")
    build.add_argument("--device", default="cpu", help="torch device for the text tower (default: cpu)")
    build.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="sentences per text-tower call")
    build.add_argument("--max-classes", type=int, default=DEFAULT_MAX_CLASSES, help="refuse longer class lists")
    build.add_argument("--cache-dir", default=None,
                       help="cache directory (default: $OVSAM_CACHE_DIR/vocab or ~/.cache/ovsam_ros/vocab)")
    build.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=run_build)

    show = actions.add_parser("show", help="describe a vocabulary file or a released embedding tensor")
    show.add_argument("file", help="a file written by `vocab build --out`, or a bare (K, P, D) tensor with --classes")
    show.add_argument("--classes", default=None, help="class names of a bare embedding tensor: 'lvis', 'coco' or FILE")
    show.add_argument("--limit", type=int, default=10, help="how many class names to list (default: 10)")
    show.add_argument("--find", action="append", default=[], metavar="NAME",
                      help="print the row of a class (repeatable)")
    show.set_defaults(handler=run_show)


def run_build(args: argparse.Namespace) -> int:
    # Imported here so `vocab show` works even where the model code cannot be built.
    from ovsam_model.checkpoint import CheckpointError, load_weights
    from ovsam_model.modeling.ovsam import build_model

    try:
        model = build_model(args.model, device=args.device)
        load_weights(model, args.weights, clip_weights=args.clip_weights)
        model.eval()
        model_key = text_model_key(model.config.name, model.clip)
        vocabulary = load_vocabulary(
            args.classes,
            model.encode_text,
            model_key=model_key,
            cache_dir=args.cache_dir,
            progress=not args.quiet,
            batch_size=args.batch_size,
            max_classes=args.max_classes,
            use_cache=not args.no_cache,
        )
        if args.out:
            save_vocabulary(vocabulary, args.out)
    except (VocabularyError, CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(describe(vocabulary, limit=5))
    if not args.no_cache:
        print(f"cache: {vocabulary_cache_path(model_key, vocabulary.names, args.cache_dir)}")
    if args.out:
        print(f"wrote: {args.out}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    try:
        if args.classes is not None:
            vocabulary = load_embedding_file(args.file, args.classes)
        else:
            vocabulary = load_vocabulary_file(args.file)
    except VocabularyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(describe(vocabulary, limit=args.limit))
    status = 0
    for name in args.find:
        try:
            row = vocabulary.index(name)
        except UnknownClassError as error:
            print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        print(f"{name!r}: row {row}, synonyms {split_synonyms(name)}")
    return status


def describe(vocabulary: Vocabulary, limit: int = 10) -> str:
    """A few human-readable lines about a vocabulary."""
    embeddings = vocabulary.embeddings
    distinct = (embeddings - embeddings[:, :1]).abs().amax(dim=(1, 2)) > 0
    deviation = float((embeddings.norm(dim=-1) - 1).abs().max())
    listed = ", ".join(vocabulary.names[: max(limit, 0)])
    if vocabulary.size > limit:
        listed += f", ... ({vocabulary.size - limit} more)"
    return "\n".join(
        [
            f"source: {vocabulary.source}",
            f"classes: {vocabulary.size}",
            f"synonyms per class: {vocabulary.synonym_count} ({int(distinct.sum())} classes use more than one)",
            f"embedding dim: {vocabulary.dim}",
            f"largest |norm - 1|: {deviation:.2e}",
            f"model key: {vocabulary.model_key or 'unknown'}",
            f"names: {listed}",
        ]
    )
