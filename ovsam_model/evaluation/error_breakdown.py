"""Where OV-SAM's naming errors come from, on the held-out set of `ovsam-model eval`.

For every object and its box prompt: whether the model names it right as it runs (the class of the
region pooled at the box of its own predicted mask, as the released model does), and whether it
would with the object's ground-truth box pooled instead (what a perfect mask would give the head),
and the IoU of its predicted mask with the object's visible mask. Accuracy and mask IoU are then
split by how much of the object's ground-truth box other objects cover and by the object's size, for
base and novel classes. The gap between the two accuracy columns is what the masks cost; what is
left with the ground-truth box is what the head and CLIP's features cannot tell apart.

In the held-out set, as in training, all but ~0.5 % of objects show 55 % or more of their shape
(`scenes.MIN_VISIBLE_FRACTION` limits what each object placed hides of earlier ones). `--moving-worlds N`
asks instead about the frames of N moving worlds, where objects drift over each other with no such
rule: every object showing `ASKABLE_MIN_PIXELS` or more, however much of it is covered, so that
mostly hidden objects are counted too.

    python -m ovsam_model.evaluation.error_breakdown [--scenes 640 | --moving-worlds 30]
        [--model ovsam-shapes] [--weights DIR] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ovsam_model.evaluation import head_scores, ovsam_masks_at
from ovsam_model.evaluation.held_out import DEFAULT_HELD_OUT_SCENES, HELD_OUT_SEED, held_out_scenes
from ovsam_model.mask_iou import mask_iou
from ovsam_model.modeling.ovsam import OVSAM
from ovsam_model.synthetic.classes import NOVEL_INDICES
from ovsam_model.synthetic.motion import MovingWorld, shown_objects
from ovsam_model.synthetic.scenes import Scene, SceneSet

# Share of an object's ground-truth box covered by other objects: alone, touched, overlapped, piled.
COVERED_BINS = (0.0, 0.01, 0.15, 0.35, 1.0)
# Square root of the ground-truth box's area, in network-input pixels.
SIZE_BINS = (0.0, 50.0, 70.0, 90.0, float("inf"))
# The moving worlds of `--moving-worlds`: seeds from 1, the node tests' frame size and object count,
# every 6th of the first 60 frames (objects move ~1 px a frame, so nearby frames repeat each other).
MOVING_WORLD_SIZE = 256
MOVING_WORLD_OBJECTS = 4
MOVING_WORLD_SPEED = 1.0
MOVING_WORLD_FRAMES = range(0, 60, 6)


@dataclass(frozen=True)
class ObjectOutcome:
    label: int
    novel: bool
    right: bool                 # named right from its box prompt, as the model runs
    right_with_true_box: bool   # named right with its ground-truth box pooled instead
    covered: float              # share of its ground-truth box covered by other objects
    size: float                 # sqrt of its ground-truth box's area, network-input pixels
    mask_iou: float             # IoU of its box prompt's mask with its visible mask, as `evaluate` counts it


def covered_share(instance_map: np.ndarray, index: int, box: np.ndarray) -> float:
    """The share of `box` (x1, y1, x2, y2, x2/y2 exclusive, image pixels) that objects other than
    instance `index` (0-based; the map holds index + 1) cover."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    region = instance_map[y1:y2, x1:x2]
    if region.size == 0:
        return 0.0
    return float(((region != 0) & (region != index + 1)).mean())


@torch.no_grad()
def scene_outcomes(model: OVSAM, text_embeddings: Tensor, scene: Scene,
                   objects: Sequence[int] | None = None) -> list[ObjectOutcome]:
    """The outcomes of a box prompt on each of `objects` of one scene (indices into its labels, in
    that order; all of them by default), its box the object's visible mask's. `text_embeddings`
    (42, P, D) in CLASS_NAMES order, as for `evaluate`."""
    chosen = list(range(len(scene.labels))) if objects is None else list(objects)
    if not chosen:
        return []
    model.eval()
    true_boxes = scene.boxes[chosen]
    pixels, _ = model.preprocess(scene.image)
    features = model.encode_image(pixels)
    size = scene.image.shape[:2]
    to_network = torch.tensor(model.input_scales(*size))  # x, y: as the predictor scales prompts
    boxes = torch.from_numpy(true_boxes).float() * to_network.repeat(2)
    output = model.decode(features, boxes=boxes)
    ious = mask_iou(ovsam_masks_at(model, output.mask_logits, size), scene.masks[chosen])
    named = head_scores(model, output.region_embedding, text_embeddings).argmax(1).numpy()
    named_with_true_box = head_scores(model, model.region_embedding(features.fpn, boxes),
                                      text_embeddings).argmax(1).numpy()
    sides = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    sizes = torch.sqrt(sides[:, 0] * sides[:, 1]).numpy()
    novel = set(NOVEL_INDICES)
    outcomes = []
    for j, index in enumerate(chosen):
        label = int(scene.labels[index])
        outcomes.append(ObjectOutcome(
            label=label, novel=label in novel, right=bool(named[j] == label),
            right_with_true_box=bool(named_with_true_box[j] == label),
            covered=covered_share(scene.instance_map, index, true_boxes[j]), size=float(sizes[j]),
            mask_iou=float(ious[j])))
    return outcomes


def object_outcomes(model: OVSAM, text_embeddings: Tensor, scenes: SceneSet,
                    progress: bool = True) -> list[ObjectOutcome]:
    """One outcome per object of `scenes`, in scene order; `text_embeddings` (42, P, D) in
    CLASS_NAMES order, as for `evaluate`."""
    outcomes = []
    for i in tqdm(range(len(scenes)), desc="held-out scenes", disable=not progress):
        outcomes += scene_outcomes(model, text_embeddings, scenes.scene(i))
    return outcomes


def moving_world_outcomes(model: OVSAM, text_embeddings: Tensor, worlds: int,
                          progress: bool = True) -> list[ObjectOutcome]:
    """One outcome per shown object (`shown_objects`) of frames `MOVING_WORLD_FRAMES` of moving
    worlds of seeds 1..`worlds`, in world, frame and object order."""
    outcomes = []
    for seed in tqdm(range(1, worlds + 1), desc="moving worlds", disable=not progress):
        world = MovingWorld(seed=seed, size=MOVING_WORLD_SIZE, num_objects=MOVING_WORLD_OBJECTS,
                            speed=MOVING_WORLD_SPEED)
        for frame in MOVING_WORLD_FRAMES:
            scene = world.render(frame)
            outcomes += scene_outcomes(model, text_embeddings, scene, shown_objects(scene))
    return outcomes


@dataclass(frozen=True)
class BreakdownRow:
    split: str         # "base" or "novel"
    by: str            # "all", "covered" or "size"
    low: float
    high: float
    count: int
    accuracy: float             # NaN when count is 0
    accuracy_true_box: float
    mask_miou: float


def breakdown(outcomes: Sequence[ObjectOutcome]) -> list[BreakdownRow]:
    """Accuracy with the model's and with the ground-truth box, and mask IoU, per split, overall and
    per bin (each bin holds low <= value < high; the last one includes its top)."""
    rows = []
    for split, is_novel in (("base", False), ("novel", True)):
        chosen = [o for o in outcomes if o.novel == is_novel]
        rows.append(_row(split, "all", 0.0, float("inf"), chosen))
        for by, edges in (("covered", COVERED_BINS), ("size", SIZE_BINS)):
            for position, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
                top_included = position == len(edges) - 2
                inside = [o for o in chosen if _in_bin(getattr(o, by), low, high, top_included)]
                rows.append(_row(split, by, low, high, inside))
    return rows


def _in_bin(value: float, low: float, high: float, top_included: bool) -> bool:
    return low <= value < high or (top_included and value == high)


def _row(split: str, by: str, low: float, high: float, chosen: Sequence[ObjectOutcome]) -> BreakdownRow:
    if not chosen:
        return BreakdownRow(split, by, low, high, 0, float("nan"), float("nan"), float("nan"))
    return BreakdownRow(split, by, low, high, len(chosen), float(np.mean([o.right for o in chosen])),
                        float(np.mean([o.right_with_true_box for o in chosen])),
                        float(np.mean([o.mask_iou for o in chosen])))


def format_breakdown(rows: Sequence[BreakdownRow]) -> str:
    lines = [f"{'split':6s} {'objects':24s} {'count':>6s} {'named right':>12s} {'with true box':>14s}"
             f" {'box mask IoU':>13s}"]
    for row in rows:
        if row.by == "all":
            what = "all"
        elif row.by == "covered":
            what = f"covered {row.low:.0%}-{row.high:.0%}"
        else:
            what = f"size {row.low:.0f}-{row.high:.0f} px" if np.isfinite(row.high) else f"size >= {row.low:.0f} px"
        lines.append(f"{row.split:6s} {what:24s} {row.count:6d} {row.accuracy:12.3f} {row.accuracy_true_box:14.3f}"
                     f" {row.mask_miou:13.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovsam_model.evaluation.error_breakdown",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="ovsam-shapes")
    parser.add_argument("--weights", default=None, help="weights directory (default: the shipped weights)")
    parser.add_argument("--scenes", type=int, default=DEFAULT_HELD_OUT_SCENES)
    parser.add_argument("--moving-worlds", type=int, default=None, metavar="N",
                        help="ask about the frames of N moving worlds (no visibility rule) instead of the held-out set")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="held-out set seed (default: eval's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        print("error: --scenes must be at least 1", file=sys.stderr)
        return 2
    if args.moving_worlds is not None and args.moving_worlds < 1:
        print("error: --moving-worlds must be at least 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from ovsam_model.predictor import OVSAMPredictor
    from ovsam_model.synthetic.classes import CLASS_NAMES
    from ovsam_model.vocabulary import UnknownClassError

    predictor = OVSAMPredictor.from_pretrained(args.model, args.weights, device="cpu")
    try:
        text = predictor.vocabulary.subset(CLASS_NAMES).embeddings
    except UnknownClassError as error:
        print(f"error: the model's vocabulary lacks a shapes class: {error}", file=sys.stderr)
        return 1
    if args.moving_worlds is not None:
        outcomes = moving_world_outcomes(predictor.model, text, args.moving_worlds)
    else:
        outcomes = object_outcomes(predictor.model, text, held_out_scenes(args.scenes, args.seed))
    print(format_breakdown(breakdown(outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
