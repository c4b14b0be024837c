"""`ovsam-model segment` on the shipped model, checked against the synthetic world's truth: the
automatic mode finds the objects of a scene, and a text query finds the queried object only."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ovsam_model.cli import main
from ovsam_model.commands.segment import rle_to_mask
from ovsam_model.mask_iou import mask_pair_iou
from ovsam_model.synthetic import CLASS_NAMES, generate_scene


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[tuple[Path, object]]:
    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(2024)
    written = []
    for index in range(6):
        scene = generate_scene(rng, size=256, max_objects=4)
        path = folder / f"scene{index}.png"
        cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        written.append((path, scene))
    return written


def _segment(image: Path, *arguments: str) -> list[dict]:
    out = image.with_suffix(f".{len(arguments)}.json")
    assert main(["segment", str(image), "--device", "cpu", "--out", str(image.with_suffix(".overlay.png")),
                 "--json", str(out), *arguments]) == 0
    return json.loads(out.read_text())["instances"]


def _objects(scene) -> list[tuple[np.ndarray, str]]:
    return [(scene.instance_map == index + 1, CLASS_NAMES[int(label)]) for index, label in enumerate(scene.labels)]


def test_everything_mode_finds_the_objects_of_each_scene(scenes) -> None:
    found = total = 0
    for image, scene in scenes:
        masks = [rle_to_mask(instance["mask_rle"]) for instance in _segment(image, "--points-per-side", "12")]
        for truth, _ in _objects(scene):
            total += 1
            found += any(mask_pair_iou(truth, mask) > 0.5 for mask in masks)
    # Measured: every object of these scenes (seed 2024, the shipped model); one miss is the margin
    # for noise (a retrained model, another torch), more is a regression.
    assert total >= 10 and found >= total - 1, f"{found} of {total} objects found"


def test_a_text_query_returns_the_queried_object_and_nothing_else(scenes) -> None:
    checked = hits = 0
    for image, scene in scenes:
        for truth, name in _objects(scene)[:1]:  # the first object's class, asked by name
            instances = _segment(image, "--text", name, "--points-per-side", "12")
            assert all(instance["label"] == name for instance in instances), [i["label"] for i in instances]
            checked += 1
            hits += any(mask_pair_iou(truth, rle_to_mask(instance["mask_rle"])) > 0.5 for instance in instances)
    # Passes with the shipped model (one invocation of the recipe, 2026-12-02); an earlier retrain of
    # the same recipe found 6 of 6 (the two before it that day: 5 of 6; the 128x128 release: 6 of 6;
    # the 64x64 release: 4 of 6, it misnamed two of the objects, so the query found nothing there);
    # one miss is the margin for noise.
    assert checked == 6 and hits >= 5, f"{hits} of {checked} queried objects found"
