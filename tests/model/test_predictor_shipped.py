"""The predictor on the shipped `ovsam-shapes` model and scenes of its synthetic world.

These check what random weights cannot: that a box lands on the right object at the right place
(also on non-square, rescaled pictures), that the mask fits it and that the label names it.
Figures are aggregated over a few seeded scenes so one hard object cannot decide the outcome.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ovsam_model.build import shipped_weights_dir
from ovsam_model.config import get_config
from ovsam_model.mask_iou import mask_pair_iou
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic import BASE_CLASSES, CLASS_NAMES, class_index, generate_scene

MODEL = "ovsam-shapes"
# Candidate weights (e.g. a fresh training run written by training.ship) can be checked before
# they replace the shipped ones: OVSAM_TEST_SHAPES_WEIGHTS=/path/to/dir pytest this file.
WEIGHTS_DIR = Path(os.environ.get("OVSAM_TEST_SHAPES_WEIGHTS") or shipped_weights_dir(MODEL))


def _shipped() -> bool:
    directory = WEIGHTS_DIR
    try:
        files = get_config(MODEL).weight_files.values()
    except ValueError:
        return False
    return directory.is_dir() and all((directory / name).is_file() for name in files)


pytestmark = pytest.mark.skipif(not _shipped(), reason="the shipped ovsam-shapes weights are not in this checkout")

BASE_INDICES = [class_index(name) for name in BASE_CLASSES]


@pytest.fixture(scope="module")
def predictor() -> OVSAMPredictor:
    return OVSAMPredictor.from_pretrained(MODEL, WEIGHTS_DIR, device="cpu")


def scenes(count: int, seed: int = 1234):
    rng = np.random.default_rng(seed)
    return [generate_scene(rng, size=256, classes=BASE_INDICES, max_objects=4) for _ in range(count)]


def test_default_vocabulary_is_the_shapes_world(predictor: OVSAMPredictor) -> None:
    assert set(predictor.vocabulary.names) == set(CLASS_NAMES)


def test_box_prompts_segment_and_name_the_object(predictor: OVSAMPredictor) -> None:
    ious, correct = [], []
    # 30 scenes, 74 objects: with 6 scenes (17 objects) one object moved the accuracy by 6 points, and a
    # trial model 5 points better than the 800-step release on 1,355 held-out objects scored 11 of 17.
    for scene in scenes(30):
        predictor.set_image(scene.image)
        prompts = [PromptSpec(f"o{i}", box=box) for i, box in enumerate(scene.boxes)]
        for result, mask, label in zip(predictor.predict(prompts), scene.masks, scene.labels):
            ious.append(mask_pair_iou(result.mask, mask))
            correct.append(result.label == CLASS_NAMES[label])
    assert np.mean(ious) > 0.75, f"box mIoU {np.mean(ious):.3f}"
    # Measured 0.851 (63 of 74) and box mIoU 0.887 with the shipped model (one 43 min 48 s invocation
    # of the recipe, CLIP and SAM2CLIP's adapter in bf16, 2026-12-04; docs/model-card-ovsam-shapes.md:
    # base accuracy 0.811 on 1,127 held-out base objects, novel 0.773); earlier retrains with the
    # recognition stage: 0.851, 0.838, 0.892, 0.878 and 0.905 (base 0.813, 0.810, 0.818, 0.817, 0.819); the
    # weights without that stage: 0.811 (60 of 74) here, under the bound; the 128x128 release: 0.622;
    # the object-crop release 0.8. The bound was 0.83 while the shipped weights scored 65-67 of 74; the
    # weights before these scored 62, and 0.82 keeps them one object above it and the weights without
    # the recognition stage one below. Deterministic scenes and
    # weights; 74 objects (one binomial standard error is 3 of them) cannot rank retrains.
    assert np.mean(correct) > 0.82, f"box label accuracy {np.mean(correct):.3f}"


@pytest.mark.parametrize("layout", ["wide", "tall"])
@pytest.mark.parametrize("zoom", [1.0, 1.7], ids=["same-size", "zoomed"])
def test_box_lands_on_the_object_in_a_non_square_picture(predictor: OVSAMPredictor, layout: str, zoom: float) -> None:
    """The scene is pasted off-centre into a wide or tall canvas (then optionally enlarged), so
    prompts and masks go through the long-side resize and the padding both ways; a wrong mapping
    would move every mask by tens of pixels."""
    import cv2

    height, width, left, top = (256, 330, 60, 0) if layout == "wide" else (330, 256, 0, 50)
    ious, errors = [], []
    for scene in scenes(4, seed=99):
        canvas = np.full((height, width, 3), 90, dtype=np.uint8)
        canvas[top:top + 256, left:left + 256] = scene.image
        truth = np.zeros((len(scene.labels), height, width), dtype=bool)
        truth[:, top:top + 256, left:left + 256] = scene.masks
        boxes = scene.boxes + np.array([left, top, left, top], dtype=np.float32)
        if zoom != 1.0:
            size = (round(width * zoom), round(height * zoom))
            canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_LINEAR)
            truth = np.stack([cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
                              for m in truth])
            boxes = boxes * zoom
        predictor.set_image(canvas)
        results = predictor.predict([PromptSpec(f"o{i}", box=box) for i, box in enumerate(boxes)])
        for result, mask, box in zip(results, truth, boxes):
            assert result.mask.shape == canvas.shape[:2]
            ious.append(mask_pair_iou(result.mask, mask))
            if result.box is not None:
                errors.append(np.abs(np.asarray(result.box) - box).max() / zoom)
    # Measured with the first full training run: mIoU 0.78-0.79, median worst-edge error 8-8.5 px
    # (0.85 and 6.5 px on the square scenes themselves, whose objects are larger in the input).
    assert np.mean(ious) > 0.7, f"mIoU {np.mean(ious):.3f}"
    assert np.median(errors) < 12, f"median box edge error {np.median(errors):.1f} px"


def test_segment_everything_recovers_the_objects(predictor: OVSAMPredictor) -> None:
    recalled, total, duplicates = 0, 0, 0
    # 20 scenes, 53 objects, so the bounds measure rates: on 3 scenes (10 objects) one more duplicate
    # decided the outcome. Measured: recall 52/53, duplicates 2 with the shipped weights (52/53 and 1 with
    # the files before, 51/53 and 8 with an earlier release, 4 duplicates with its 800-step CLIP2SAM).
    for scene in scenes(20, seed=7):
        predictor.set_image(scene.image)
        found = predictor.segment_everything(points_per_side=12)
        for mask in scene.masks:
            matches = sum(mask_pair_iou(p.mask, mask) > 0.5 for p in found)
            recalled += matches > 0
            duplicates += max(matches - 1, 0)
            total += 1
    assert recalled / total >= 0.7, f"recall {recalled}/{total}"
    assert duplicates <= total // 4


def test_find_returns_the_queried_object(predictor: OVSAMPredictor) -> None:
    hits, total = 0, 0
    for scene in scenes(4, seed=21):
        predictor.set_image(scene.image)
        name = CLASS_NAMES[scene.labels[0]]
        found = predictor.find(name, points_per_side=12)
        assert all(p.label == name for p in found)
        hits += any(mask_pair_iou(p.mask, scene.masks[0]) > 0.5 for p in found)
        total += 1
    assert hits / total >= 0.5, f"found {hits}/{total}"
