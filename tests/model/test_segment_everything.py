"""Segment-everything building blocks (grid, scores, mask NMS) and the predictor's automatic modes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ovsam_model.modeling.ovsam import OVSAM, build_model
from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.segment_everything import grid_points, mask_iou_matrix, mask_nms, mask_scores, stability_scores
from ovsam_model.vocabulary import Vocabulary, encode_class_names

CLASS_NAMES = ["red circle", "blue square", "green star", "yellow hexagon"]
# Thresholds off: the tiny model has random weights, so its masks are neither confident nor stable.
PERMISSIVE = dict(points_per_side=6, min_mask_score=0.0, stability_threshold=0.0, min_area=1)


def rectangle(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


# ---------------------------------------------------------------------------- building blocks


def test_grid_points_are_cell_centres_inside_the_image() -> None:
    points = grid_points(4, height=40, width=80)
    assert points.shape == (16, 2)
    assert sorted(set(points[:, 0].tolist())) == [10.0, 30.0, 50.0, 70.0]
    assert sorted(set(points[:, 1].tolist())) == [5.0, 15.0, 25.0, 35.0]
    assert points[1].tolist() == [30.0, 5.0]  # row-major: x varies fastest
    with pytest.raises(ValueError):
        grid_points(0, 10, 10)


def test_mask_iou_matrix() -> None:
    a = rectangle(10, 10, 0, 0, 4, 4)  # 16 px
    b = rectangle(10, 10, 2, 0, 6, 4)  # 16 px, 8 shared
    empty = torch.zeros(10, 10, dtype=torch.bool)
    iou = mask_iou_matrix(torch.stack([a, b, empty]), torch.stack([a, b, empty]))
    assert iou[0, 0] == 1.0 and iou[0, 1] == pytest.approx(8 / 24) and iou[2, 2] == 0.0
    with pytest.raises(ValueError, match="sizes differ"):
        mask_iou_matrix(a[None], torch.zeros(1, 5, 5, dtype=torch.bool))


def test_mask_nms_keeps_the_best_of_each_overlapping_group() -> None:
    big = rectangle(32, 32, 0, 0, 20, 20)
    big_shifted = rectangle(32, 32, 1, 1, 21, 21)  # IoU with big = 361/439 = 0.82
    small_inside = rectangle(32, 32, 2, 2, 8, 8)  # inside big, IoU 0.09: a different object
    far = rectangle(32, 32, 24, 24, 32, 32)
    far_copy = far.clone()
    masks = torch.stack([big, big_shifted, small_inside, far, far_copy])
    scores = torch.tensor([0.80, 0.90, 0.70, 0.60, 0.65])
    kept = mask_nms(masks, scores, iou_threshold=0.7)
    assert kept.tolist() == [1, 2, 4]  # best first; big and far lose to their better duplicates
    # A stricter threshold merges nothing more here, a looser one keeps everything distinct.
    assert mask_nms(masks, scores, iou_threshold=0.9).tolist() == [1, 0, 2, 4]
    assert mask_nms(masks[:0], scores[:0], 0.5).tolist() == []


def test_mask_scores_and_stability() -> None:
    logits = torch.full((3, 8, 8), -5.0)
    logits[0, :4, :4] = 5.0  # confident square, sharp edges
    logits[1, :4, :4] = 0.5  # weak square: vanishes at threshold +1
    scores = mask_scores(logits)
    assert scores[0] == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())
    assert scores[1] == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item())
    assert scores[2] == 0.0  # empty
    stability = stability_scores(logits, offset=1.0)
    assert stability.tolist() == [1.0, 0.0, 1.0]


# ---------------------------------------------------------------------------- predictor


@pytest.fixture(scope="module")
def model() -> OVSAM:
    torch.manual_seed(1)
    return build_model("ovsam-tiny")


@pytest.fixture(scope="module")
def vocabulary(model: OVSAM) -> Vocabulary:
    with torch.no_grad():
        return Vocabulary(CLASS_NAMES, encode_class_names(model.encode_text, CLASS_NAMES, progress=False))


@pytest.fixture
def predictor(model: OVSAM, vocabulary: Vocabulary) -> OVSAMPredictor:
    predictor = OVSAMPredictor(model, vocabulary)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, size=(90, 120, 3), dtype=np.uint8)
    image[10:50, 10:60] = (220, 30, 30)
    image[55:85, 70:115] = (30, 200, 60)
    predictor.set_image(image)
    return predictor


def test_segment_everything_deduplicates_and_sorts(predictor: OVSAMPredictor) -> None:
    everything = predictor.segment_everything(**PERMISSIVE, nms_iou=0.5)
    without_nms = predictor.segment_everything(**PERMISSIVE, nms_iou=1.0)
    assert 0 < len(everything) < len(without_nms) <= 36
    masks = torch.from_numpy(np.stack([p.mask for p in everything]))
    iou = mask_iou_matrix(masks, masks)
    iou.fill_diagonal_(0.0)
    assert float(iou.max()) <= 0.5
    assert [p.score for p in everything] == sorted((p.score for p in everything), reverse=True)
    assert all(p.prompt_id.startswith("grid-") and p.mask.shape == (90, 120) for p in everything)
    assert len({p.prompt_id for p in everything}) == len(everything)


def test_segment_everything_respects_max_instances_and_filters(predictor: OVSAMPredictor) -> None:
    # nms_iou=1 keeps every distinct grid mask, so there are more candidates than the limit.
    unlimited = predictor.segment_everything(**PERMISSIVE, nms_iou=1.0)
    limited = predictor.segment_everything(**PERMISSIVE, nms_iou=1.0, max_instances=2)
    assert len(unlimited) > 2 and len(limited) == 2
    assert [p.prompt_id for p in limited] == [p.prompt_id for p in unlimited[:2]]
    assert predictor.segment_everything(**PERMISSIVE, max_instances=0) == []
    # A mask score of 1 is unreachable (sigmoid < 1), so nothing passes.
    assert predictor.segment_everything(**{**PERMISSIVE, "min_mask_score": 1.0}) == []
    big = predictor.segment_everything(**{**PERMISSIVE, "min_area": 2000})
    assert all(p.area >= 2000 for p in big)
    with pytest.raises(ValueError, match="points_per_side"):
        predictor.segment_everything(points_per_side=0)


def test_segment_everything_batches_do_not_change_results(predictor: OVSAMPredictor) -> None:
    one_pass = predictor.segment_everything(**PERMISSIVE, batch_size=64)
    small = predictor.segment_everything(**PERMISSIVE, batch_size=5)
    assert [p.prompt_id for p in one_pass] == [p.prompt_id for p in small]


def record_vocabulary_sizes(monkeypatch: pytest.MonkeyPatch, model: OVSAM) -> list[int]:
    sizes: list[int] = []
    original = model.classify

    def recording(region_embedding, text_embeddings, chunk_size=4096):
        sizes.append(int(text_embeddings.shape[0]))
        return original(region_embedding, text_embeddings, chunk_size)

    monkeypatch.setattr(model, "classify", recording)
    return sizes


def test_find_keeps_only_queried_labels(predictor: OVSAMPredictor) -> None:
    everything = predictor.segment_everything(**PERMISSIVE)
    label = everything[0].label
    found = predictor.find(label, **PERMISSIVE)
    assert [p.prompt_id for p in found] == [p.prompt_id for p in everything if p.label == label]
    threshold = found[0].score
    kept = predictor.find([label], score_threshold=threshold, **PERMISSIVE)
    assert kept and [p.prompt_id for p in kept] == [p.prompt_id for p in found if p.score >= threshold]


def test_find_extends_the_vocabulary_for_the_call_only(
        monkeypatch: pytest.MonkeyPatch, predictor: OVSAMPredictor, vocabulary: Vocabulary, model: OVSAM) -> None:
    sizes = record_vocabulary_sizes(monkeypatch, model)
    found = predictor.find("purple cross, Red_Circle", **PERMISSIVE)
    assert sizes == [len(CLASS_NAMES) + 1]  # "Red_Circle" is the existing "red circle"
    assert {p.label for p in found} <= {"purple cross", "red circle"}
    assert predictor.vocabulary is vocabulary and "purple cross" not in predictor.vocabulary
    # Querying the whole vocabulary plus the new class keeps everything segment_everything
    # finds with that extended vocabulary.
    everything_names = CLASS_NAMES + ["purple cross"]
    extended = vocabulary.extend(["purple cross"], predictor.encode_text)
    all_found = predictor.find(everything_names, **PERMISSIVE)
    reference = predictor.segment_everything(**PERMISSIVE, vocabulary=extended)
    assert [p.prompt_id for p in all_found] == [p.prompt_id for p in reference]
    assert len(predictor.find(everything_names, **PERMISSIVE, max_instances=1)) == 1


@pytest.mark.parametrize(
    "query, message",
    [("", "names no class"), (" , ,", "names no class"), ("x" * 1001, "1000"),
     (",".join(f"c{i}" for i in range(101)), "at most 100"), ([], "names no class")],
)
def test_bad_text_queries(predictor: OVSAMPredictor, query, message) -> None:
    with pytest.raises(ValueError, match=message):
        predictor.find(query)
