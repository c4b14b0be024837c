"""`ovsam-model segment`: segment and name objects in one picture from the command line.

    ovsam-model segment IMAGE [--point X,Y[,LABEL] ...] [--box X0,Y0,X1,Y1 ...] [--group-points]
                              [--text "mug, bottle"] [--vocab lvis|coco|FILE] [--model NAME]
                              [--weights DIR] [--device auto|cpu|cuda] [--top-k N]
                              [--out overlay.png] [--json OUT]

Each --point and each --box is its own prompt; with --group-points all points form one prompt
(together with the single --box, if given). --text finds the named classes with the automatic
mode; with no prompt and no text, everything the model finds is returned. Coordinates are pixels
of IMAGE (x right, y down). Problems are reported as one line on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

EXIT_USAGE = 2


class CommandError(Exception):
    """A problem with the command's input; printed as is, exit code 2."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment and name objects in an image from points, boxes or text",
        description="Segment and name objects in an image. Prompts are in the image's pixels (x right, y down).",
    )
    parser.add_argument("image", help="picture file (PNG, JPEG, ...; grey, 16-bit and RGBA are accepted)")
    parser.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                        help="a point prompt; LABEL 1 = foreground (default), 0 = background (repeatable)")
    parser.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1",
                        help="a box prompt (repeatable)")
    parser.add_argument("--group-points", action="store_true",
                        help="all --point values form one prompt, with the --box if one is given")
    parser.add_argument("--text", default=None, metavar="QUERY",
                        help="find these classes, comma-separated, e.g. \"mug, bottle\"")
    parser.add_argument("--vocab", default=None, metavar="lvis|coco|FILE",
                        help="vocabulary to name masks from (default: the model's own)")
    parser.add_argument("--model", default="ovsam-shapes", help="model configuration name (default: ovsam-shapes)")
    parser.add_argument("--weights", default=None, metavar="DIR",
                        help="weights directory (default: the weights shipped with the model)")
    parser.add_argument("--no-verify-digests", dest="verify_digests", action="store_false",
                        help="load files whose SHA-256 differs from the released one (your own weights saved "
                             "under the released file names); keys are still checked strictly")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--top-k", type=int, default=5, help="alternative labels kept per instance (default: 5)")
    parser.add_argument("--points-per-side", type=int, default=16,
                        help="grid size of the automatic mode used by --text or no prompt (default: 16)")
    parser.add_argument("--out", default=None, metavar="PNG",
                        help="overlay picture to write (default: <image name>_ovsam.png in the current directory)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    parser.set_defaults(handler=run)


def parse_numbers(text: str, counts: Sequence[int], what: str) -> list[float]:
    """Comma-separated finite numbers, as many as one of `counts`."""
    pieces = [piece.strip() for piece in text.split(",")]
    try:
        numbers = [float(piece) for piece in pieces]
    except ValueError:
        numbers = []
    if len(numbers) not in counts or not all(np.isfinite(numbers)):
        expected = " or ".join(str(count) for count in counts)
        raise CommandError(f"{what} {text!r} must be {expected} comma-separated numbers")
    return numbers


def parse_point(text: str) -> tuple[float, float, int]:
    numbers = parse_numbers(text, (2, 3), "--point")
    label = numbers[2] if len(numbers) == 3 else 1.0
    if label not in (0.0, 1.0):
        raise CommandError(f"--point {text!r}: LABEL must be 1 (foreground) or 0 (background)")
    return numbers[0], numbers[1], int(label)


def parse_box(text: str) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = parse_numbers(text, (4,), "--box")
    return x0, y0, x1, y1


def build_prompts(points: Sequence[str], boxes: Sequence[str], group_points: bool) -> list:
    from ovsam_model.prompts import PromptSpec

    parsed_points = [parse_point(text) for text in points]
    parsed_boxes = [parse_box(text) for text in boxes]
    if group_points and parsed_points:
        if len(parsed_boxes) > 1:
            raise CommandError("--group-points combines the points with at most one --box")
        return [PromptSpec(
            "prompt-1",
            points=[(x, y) for x, y, _ in parsed_points],
            point_labels=[label for _, _, label in parsed_points],
            box=parsed_boxes[0] if parsed_boxes else None,
        )]
    prompts = [PromptSpec(f"point-{i}", points=[(x, y)], point_labels=[label])
               for i, (x, y, label) in enumerate(parsed_points, start=1)]
    prompts += [PromptSpec(f"box-{i}", box=box) for i, box in enumerate(parsed_boxes, start=1)]
    return prompts


def read_image(path: str) -> np.ndarray:
    """An image file as an array in RGB(A) channel order (grey and 16-bit kept as they are)."""
    import cv2

    file = Path(path)
    if not file.is_file():
        raise CommandError(f"image file {path!r} does not exist")
    pixels = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise CommandError(f"cannot read {path!r} as an image (is it a PNG, JPEG, TIFF, ...?)")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
    return pixels


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a boolean mask: {"size": [H, W], "counts": [bg, fg, bg, ...]}, run
    lengths down the columns (column-major, as COCO and pycocotools' frPyObjects read them), starting
    with a (possibly empty) run of background."""
    flat = np.asarray(mask, dtype=bool).reshape(-1, order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_to_mask(rle: dict) -> np.ndarray:
    """The inverse of mask_to_rle (COCO's uncompressed RLE, column-major)."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    return np.repeat(values, rle["counts"]).reshape((height, width), order="F")


def format_table(predictions: Sequence) -> str:
    header = f"{'prompt':<12} {'label':<24} {'score':>6} {'mask':>6}  {'box':<22} {'area':>8}"
    lines = [header, "-" * len(header)]
    for p in predictions:
        box = "-" if p.box is None else ",".join(str(v) for v in p.box)
        label = p.label or "-"
        lines.append(f"{p.prompt_id:<12} {label:<24.24} {p.score:6.3f} {p.mask_score:6.3f}  {box:<22} {p.area:8d}")
    if not predictions:
        lines.append("(no instances)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except CommandError as error:
        print(f"ovsam-model segment: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # every model-side problem becomes one clean line
        known = _known_errors()
        if not isinstance(error, known):
            raise
        print(f"ovsam-model segment: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _known_errors() -> tuple[type[BaseException], ...]:
    from ovsam_model.checkpoint import CheckpointError
    from ovsam_model.feature_cache import ImageNotSetError

    # ValueError covers PromptError, ImageError, ConfigError and VocabularyError; OSError covers
    # missing weight files; KeyError an unknown class name.
    return (ValueError, OSError, CheckpointError, ImageNotSetError, KeyError)


def _run(args: argparse.Namespace) -> int:
    if args.top_k < 0:
        raise CommandError(f"--top-k must be 0 or more, got {args.top_k}")
    prompts = build_prompts(args.point, args.box, args.group_points)
    image = read_image(args.image)

    import cv2

    from ovsam_model.image_input import as_rgb_uint8
    from ovsam_model.predictor import OVSAMPredictor
    from ovsam_model.visualization import draw_instances

    rgb = as_rgb_uint8(image)
    height, width = rgb.shape[:2]
    for prompt in prompts:  # before loading a model: a typo should fail in a second, not a minute
        prompt.validate(height, width)
    out_path = Path(args.out) if args.out else Path.cwd() / f"{Path(args.image).stem}_ovsam.png"
    if out_path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
        raise CommandError(f"--out {str(out_path)!r} needs a picture extension such as .png")

    predictor = OVSAMPredictor.from_pretrained(
        args.model, args.weights, device=args.device, vocabulary=args.vocab, verify_digests=args.verify_digests)
    predictor.set_image(rgb)
    predictions = []
    if prompts:
        predictions += predictor.predict(prompts, top_k=args.top_k)
    if args.text is not None:
        predictions += predictor.find(args.text, top_k=args.top_k, points_per_side=args.points_per_side)
    if not prompts and args.text is None:
        predictions = predictor.segment_everything(top_k=args.top_k, points_per_side=args.points_per_side)

    overlay = draw_instances(rgb, predictions, prompts=prompts)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
        raise CommandError(f"could not write the overlay to {str(out_path)!r}")

    print(format_table(predictions))
    print(f"overlay: {out_path}")
    if args.json:
        vocabulary = predictor.vocabulary
        document = {
            "image": str(args.image),
            "height": height,
            "width": width,
            "model": predictor.model.config.name,
            "vocabulary": {"source": vocabulary.source, "size": vocabulary.size},
            "instances": [dict(p.summary(), mask_rle=mask_to_rle(p.mask)) for p in predictions],
        }
        json_path = Path(args.json)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=1))
        print(f"json: {json_path}")
    return 0
