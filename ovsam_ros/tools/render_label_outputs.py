"""Render the README's picture of the label outputs: `overlay`, `instance_ids` and `semantic` of one
answer, the two label images in colour, side by side.

    .venv/bin/python -m ovsam_ros.tools.render_label_outputs --out docs/label_outputs.png

The shipped model (ovsam-shapes, on the CPU) answers box prompts around the objects of a synthetic
scene; the label images are made by the node's own conversion (ovsam_ros.label_images), so the
picture shows what a subscriber decodes. Colours: each instance id / class value its own hue, 0 black.
"""
from __future__ import annotations

import argparse
import colorsys
from pathlib import Path
from typing import Sequence

import numpy as np

from ovsam_model.mask_box import tight_box
from ovsam_ros.label_images import instance_id_image, semantic_image

CAPTION_HEIGHT = 22


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) integer labels -> (H, W, 3) uint8 RGB: a distinct hue per value (golden-angle steps), 0 black."""
    values = np.arange(int(labels.max()) + 1)
    palette = np.zeros((len(values), 3), np.uint8)
    for value in values[1:]:
        hue = (value * 0.618033988749895) % 1.0
        palette[value] = [round(255 * channel) for channel in colorsys.hsv_to_rgb(hue, 0.75, 1.0)]
    return palette[labels]


def captioned(panel: np.ndarray, caption: str) -> np.ndarray:
    import cv2

    band = np.full((CAPTION_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(band, caption, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([band, panel])


def scene_with_boxes(seed: int, size: int) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A synthetic scene and a box prompt around each of its objects (from the scene's truth)."""
    from ovsam_model.synthetic.motion import MovingWorld

    scene = MovingWorld(seed=seed, size=size, num_objects=5, speed=0.0).render(0)
    boxes = [tuple(float(v) for v in box) for box in map(tight_box, scene.masks) if box is not None]
    return scene.image, boxes


def render(seed: int = 3, size: int = 256) -> np.ndarray:
    from ovsam_model.predictor import OVSAMPredictor
    from ovsam_model.prompts import PromptSpec
    from ovsam_model.visualization import draw_instances

    rgb, boxes = scene_with_boxes(seed, size)
    predictor = OVSAMPredictor.from_pretrained("ovsam-shapes", device="cpu")
    key = predictor.set_image(rgb)
    prompts = [PromptSpec(prompt_id=f"box-{i}", box=box) for i, box in enumerate(boxes)]
    predictions = [p for p in predictor.predict(prompts, key=key) if p.box is not None]
    ids = instance_id_image(predictions, rgb.shape[0], rgb.shape[1])
    semantic = semantic_image(ids, [p.class_index for p in predictions])
    panels: Sequence[tuple[np.ndarray, str]] = (
        (draw_instances(rgb, predictions), "overlay"),
        (colour_labels(ids), "instance_ids (1 + instance index)"),
        (colour_labels(semantic), "semantic (1 + class_index)"),
    )
    gap = np.full((size + CAPTION_HEIGHT, 4, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for panel, caption in panels:
        row += [captioned(panel, caption), gap]
    return np.hstack(row[:-1])


def main(argv: Sequence[str] | None = None) -> int:
    import cv2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/label_outputs.png"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    picture = render(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{args.out}: {picture.shape[1]}x{picture.shape[0]}, {args.out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
