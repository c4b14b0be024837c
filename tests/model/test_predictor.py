"""OVSAMPredictor on the tiny configuration (random weights, real forward passes)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ovsam_model.feature_cache import ImageNotSetError
from ovsam_model.image_input import ImageError
from ovsam_model.modeling.ovsam import OVSAM, build_model
from ovsam_model.predictor import InstancePrediction, OVSAMPredictor
from ovsam_model.prompts import PromptError, PromptSpec
from ovsam_model.vocabulary import Vocabulary, VocabularyError, encode_class_names

HEIGHT, WIDTH = 97, 143  # non-square on purpose: exercises the long-side resize and the padding
CLASS_NAMES = ["red circle", "blue square", "green star", "yellow hexagon"]


@pytest.fixture(scope="module")
def model() -> OVSAM:
    torch.manual_seed(0)
    return build_model("ovsam-tiny")


@pytest.fixture(scope="module")
def vocabulary(model: OVSAM) -> Vocabulary:
    with torch.no_grad():
        embeddings = encode_class_names(model.encode_text, CLASS_NAMES, progress=False)
    return Vocabulary(CLASS_NAMES, embeddings, source="test")


@pytest.fixture
def predictor(model: OVSAM, vocabulary: Vocabulary) -> OVSAMPredictor:
    return OVSAMPredictor(model, vocabulary)


def scene(seed: int = 0, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 50, size=(height, width, 3), dtype=np.uint8)
    image[20:60, 30:80] = (210, 40, 40)
    image[50:90, 90:130] = (40, 60, 220)
    return image


def all_prompt_kinds() -> list[PromptSpec]:
    return [
        PromptSpec("point", points=[[50.0, 40.0]]),
        PromptSpec("points", points=[[50.0, 40.0], [110.0, 70.0]], point_labels=[1, 0]),
        PromptSpec("box", box=[30.0, 20.0, 80.0, 60.0]),
        PromptSpec("box+points", points=[[100.0, 60.0]], point_labels=[1], box=[90.0, 50.0, 130.0, 90.0]),
    ]


def check_prediction(prediction: InstancePrediction, vocabulary: Vocabulary, top_k: int) -> None:
    assert prediction.mask.shape == (HEIGHT, WIDTH) and prediction.mask.dtype == np.bool_
    assert 0.0 <= prediction.mask_score <= 1.0
    if prediction.box is None:
        assert not prediction.mask.any() and prediction.class_index == -1 and prediction.label == ""
        return
    x0, y0, x1, y1 = prediction.box
    assert 0 <= x0 < x1 <= WIDTH and 0 <= y0 < y1 <= HEIGHT
    # The box is tight: nothing outside it, something on each of its edges.
    assert prediction.mask[y0:y1, x0:x1].sum() == prediction.area
    assert prediction.mask[y0, x0:x1].any() and prediction.mask[y1 - 1, x0:x1].any()
    assert prediction.mask[y0:y1, x0].any() and prediction.mask[y0:y1, x1 - 1].any()
    assert prediction.mask_score > 0.5  # mean probability of pixels whose logit is positive
    assert 0 <= prediction.class_index < vocabulary.size
    assert prediction.label == vocabulary.names[prediction.class_index]
    assert 0.0 <= prediction.score <= 1.0
    assert (len(prediction.top_labels) == len(prediction.top_scores) == len(prediction.top_indices)
            == min(top_k, vocabulary.size))
    assert prediction.top_indices[0] == prediction.class_index and prediction.top_scores[0] == prediction.score
    assert prediction.top_scores == sorted(prediction.top_scores, reverse=True)
    assert [vocabulary.names[i] for i in prediction.top_indices] == prediction.top_labels


def test_every_prompt_kind_gives_original_resolution_results(predictor: OVSAMPredictor, vocabulary: Vocabulary) -> None:
    predictor.set_image(scene())
    prompts = all_prompt_kinds()
    results = predictor.predict(prompts, top_k=3)
    assert [r.prompt_id for r in results] == [p.prompt_id for p in prompts]
    for result in results:
        check_prediction(result, vocabulary, top_k=3)
    # check_prediction's box, label and top-k checks run only on non-empty masks: these seeded weights
    # give some, and a postprocessing that emptied every mask must not pass for one that works.
    assert sum(r.box is not None for r in results) >= 2
    assert predictor.image_size() == (HEIGHT, WIDTH)


def test_top_k_larger_than_vocabulary_is_capped(predictor: OVSAMPredictor, vocabulary: Vocabulary) -> None:
    predictor.set_image(scene())
    (result,) = predictor.predict([PromptSpec("b", box=[30, 20, 80, 60])], top_k=50)
    assert result.box is not None  # else check_prediction would not look at top-k
    check_prediction(result, vocabulary, top_k=50)


def test_predictions_are_deterministic(model: OVSAM, vocabulary: Vocabulary) -> None:
    first = OVSAMPredictor(model, vocabulary)
    second = OVSAMPredictor(model, vocabulary)
    first.set_image(scene())
    second.set_image(scene())
    for a, b in zip(first.predict(all_prompt_kinds()), second.predict(all_prompt_kinds())):
        np.testing.assert_array_equal(a.mask, b.mask)
        assert (a.mask_score, a.score, a.top_indices) == (b.mask_score, b.score, b.top_indices)


def test_batched_equals_one_by_one(predictor: OVSAMPredictor) -> None:
    predictor.set_image(scene())
    rng = np.random.default_rng(3)
    prompts = [PromptSpec(f"p{i}", points=[[rng.uniform(5, WIDTH - 5), rng.uniform(5, HEIGHT - 5)]]) for i in range(6)]
    # A prompt of another layout in the middle: results must still come back in input order.
    prompts.insert(3, PromptSpec("box", box=[30, 20, 80, 60]))
    batched = predictor.predict(prompts)
    for prompt, together in zip(prompts, batched):
        (alone,) = predictor.predict([prompt])
        assert together.prompt_id == alone.prompt_id == prompt.prompt_id
        differing = np.count_nonzero(together.mask != alone.mask)
        assert differing <= 0.001 * together.mask.size  # float noise may flip a boundary pixel
        assert together.mask_score == pytest.approx(alone.mask_score, abs=1e-4)
        assert together.score == pytest.approx(alone.score, abs=1e-4)
        assert together.class_index == alone.class_index


def test_chunked_decoding_matches_one_pass(predictor: OVSAMPredictor) -> None:
    predictor.set_image(scene())
    prompts = [PromptSpec(f"p{i}", points=[[10.0 + 12 * i, 40.0]]) for i in range(5)]
    for a, b in zip(predictor.predict(prompts), predictor.predict(prompts, max_batch=2)):
        assert np.count_nonzero(a.mask != b.mask) <= 0.001 * a.mask.size
        assert a.mask_score == pytest.approx(b.mask_score, abs=1e-4)


def count_encode_calls(monkeypatch: pytest.MonkeyPatch, model: OVSAM) -> list[int]:
    calls: list[int] = []
    original = model.encode_image

    def counting(pixels):
        calls.append(1)
        return original(pixels)

    monkeypatch.setattr(model, "encode_image", counting)
    return calls


def test_cache_hit_skips_the_backbone(monkeypatch: pytest.MonkeyPatch, predictor: OVSAMPredictor, model: OVSAM) -> None:
    calls = count_encode_calls(monkeypatch, model)
    key = predictor.set_image(scene(0))
    assert predictor.set_image(scene(0)) == key  # same pixels -> same content hash
    assert len(calls) == 1
    predictor.set_image(scene(0), key="camera/42")
    predictor.set_image(np.zeros((4, 4, 3), dtype=np.uint8), key="camera/42")  # a cached key is trusted
    assert len(calls) == 2
    predictor.predict([PromptSpec("p", points=[[10, 10]])], key="camera/42")
    predictor.predict([PromptSpec("p", points=[[10, 10]])], key=key)
    assert len(calls) == 2
    predictor.set_image(scene(1))
    assert len(calls) == 3


def test_lru_eviction(monkeypatch: pytest.MonkeyPatch, model: OVSAM, vocabulary: Vocabulary) -> None:
    predictor = OVSAMPredictor(model, vocabulary, cache_size=2)
    calls = count_encode_calls(monkeypatch, model)
    predictor.set_image(scene(0), key="a")
    predictor.set_image(scene(1), key="b")
    predictor.predict([PromptSpec("p", points=[[5, 5]])], key="a")  # use refreshes "a"
    predictor.set_image(scene(2), key="c")  # evicts the least recently used: "b"
    assert predictor.has_image("a") and predictor.has_image("c") and not predictor.has_image("b")
    with pytest.raises(ImageNotSetError, match="'b'"):
        predictor.predict([PromptSpec("p", points=[[5, 5]])], key="b")
    predictor.set_image(scene(1), key="b")
    assert len(calls) == 4
    assert not predictor.has_image("a")


def test_default_key_is_the_most_recently_set_image(predictor: OVSAMPredictor) -> None:
    predictor.set_image(scene(0, 50, 60), key="small")
    predictor.set_image(scene(1), key="big")
    predictor.predict([PromptSpec("p", points=[[5, 5]])], key="small")  # does not change the default
    assert predictor.image_size() == (HEIGHT, WIDTH)
    (result,) = predictor.predict([PromptSpec("p", points=[[5, 5]])])
    assert result.mask.shape == (HEIGHT, WIDTH)
    assert predictor.image_size("small") == (50, 60)


def test_predict_without_an_image_is_a_clear_error(predictor: OVSAMPredictor) -> None:
    with pytest.raises(ImageNotSetError, match="set_image"):
        predictor.predict([PromptSpec("p", points=[[5, 5]])])


def capture_decode(monkeypatch: pytest.MonkeyPatch, model: OVSAM, paint_boxes: bool = False) -> list[dict]:
    """Record what reaches the decoder; with paint_boxes, replace each mask by its prompt's box
    (drawn on the stride-4 grid) so the way back to original pixels can be checked too."""
    seen: list[dict] = []
    original = model.decode

    def recording(features, points=None, point_labels=None, boxes=None):
        seen.append({"points": points, "labels": point_labels, "boxes": boxes})
        output = original(features, points, point_labels, boxes)
        if paint_boxes and boxes is not None:
            low = torch.full_like(output.mask_logits, -10.0)
            for i, (x0, y0, x1, y1) in enumerate((boxes / 4).round().long().tolist()):
                low[i, 0, y0:y1, x0:x1] = 10.0
            output.mask_logits = low
        return output

    monkeypatch.setattr(model, "decode", recording)
    return seen


def test_prompt_coordinates_reach_the_decoder_in_network_pixels(
        monkeypatch: pytest.MonkeyPatch, predictor: OVSAMPredictor, model: OVSAM) -> None:
    seen = capture_decode(monkeypatch, model)
    predictor.set_image(scene())
    box = [30.0, 20.0, 80.0, 60.0]
    predictor.predict([PromptSpec("both", points=[[50.0, 40.0], [10.0, 90.0]], point_labels=[1, 0], box=box)])
    size = model.config.image_size
    scale = size / WIDTH  # the long side (width) becomes the input size
    resized_h, resized_w = int(HEIGHT * scale), size  # truncated, as the official code does
    expected_box = torch.tensor([[30.0 * resized_w / WIDTH, 20.0 * resized_h / HEIGHT,
                                  80.0 * resized_w / WIDTH, 60.0 * resized_h / HEIGHT]])
    (call,) = seen
    torch.testing.assert_close(call["boxes"].cpu(), expected_box)
    expected_points = torch.tensor([[[50.0 * resized_w / WIDTH, 40.0 * resized_h / HEIGHT],
                                     [10.0 * resized_w / WIDTH, 90.0 * resized_h / HEIGHT]]])
    torch.testing.assert_close(call["points"].cpu(), expected_points)
    assert call["labels"].cpu().tolist() == [[1, 0]]


def test_a_box_mask_comes_back_where_the_box_was(
        monkeypatch: pytest.MonkeyPatch, predictor: OVSAMPredictor, model: OVSAM) -> None:
    capture_decode(monkeypatch, model, paint_boxes=True)
    predictor.set_image(scene())
    box = (30, 20, 80, 60)
    (result,) = predictor.predict([PromptSpec("b", box=box)])
    # One stride-4 cell of the network input is 4 / scale = 4.5 original pixels.
    cell = 4 * WIDTH / model.config.image_size
    assert result.box is not None
    assert np.allclose(result.box, box, atol=cell)


def test_all_prompts_are_validated_before_any_decoding(
        monkeypatch: pytest.MonkeyPatch, predictor: OVSAMPredictor, model: OVSAM) -> None:
    seen = capture_decode(monkeypatch, model)
    predictor.set_image(scene())
    prompts = [PromptSpec("fine", points=[[5, 5]]), PromptSpec("outside", points=[[WIDTH + 3, 5]])]
    with pytest.raises(PromptError, match="'outside'"):
        predictor.predict(prompts)
    with pytest.raises(PromptError, match="'nan'"):
        predictor.predict([PromptSpec("nan", points=[[np.nan, 5]])])
    with pytest.raises(PromptError, match="x1 > x0"):
        predictor.predict([PromptSpec("inverted", box=[50, 10, 20, 40])])
    with pytest.raises(PromptError, match="only background"):
        predictor.predict([PromptSpec("bg", points=[[5, 5]], point_labels=[0])])
    assert seen == []
    assert predictor.predict([]) == []


@pytest.mark.parametrize(
    "image",
    [
        np.full((HEIGHT, WIDTH), 128, dtype=np.uint8),
        np.full((HEIGHT, WIDTH, 4), 90, dtype=np.uint8),
        np.full((HEIGHT, WIDTH), 40000, dtype=np.uint16),
    ],
    ids=["grey", "rgba", "uint16"],
)
def test_other_image_layouts_are_accepted(predictor: OVSAMPredictor, image: np.ndarray) -> None:
    predictor.set_image(image)
    (result,) = predictor.predict([PromptSpec("p", points=[[20, 20]])])
    assert result.mask.shape == (HEIGHT, WIDTH)


@pytest.mark.parametrize("image", [np.zeros((0, 0, 3), dtype=np.uint8), np.zeros((1, 1, 3), dtype=np.uint8)],
                         ids=["empty", "1x1"])
def test_unusable_images_are_refused(predictor: OVSAMPredictor, image: np.ndarray) -> None:
    with pytest.raises(ImageError):
        predictor.set_image(image)


def test_smallest_image_segments(predictor: OVSAMPredictor) -> None:
    predictor.set_image(np.full((2, 3, 3), 200, dtype=np.uint8))
    (result,) = predictor.predict([PromptSpec("p", points=[[1, 1]])])
    assert result.mask.shape == (2, 3)


def test_vocabulary_override_for_one_call(predictor: OVSAMPredictor, model: OVSAM, vocabulary: Vocabulary) -> None:
    predictor.set_image(scene())
    other_names = ["purple cross", "white triangle"]
    with torch.no_grad():
        other = Vocabulary(other_names, encode_class_names(model.encode_text, other_names, progress=False))
    (result,) = predictor.predict([PromptSpec("b", box=[30, 20, 80, 60])], vocabulary=other)
    assert result.label in other_names and len(result.top_labels) == 2
    assert predictor.vocabulary is vocabulary


def test_set_vocabulary_from_names_and_dimension_check(
        monkeypatch: pytest.MonkeyPatch, tmp_path, predictor: OVSAMPredictor) -> None:
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path))
    chosen = predictor.set_vocabulary(["cup", "bottle"])
    assert predictor.vocabulary is chosen and chosen.names == ["cup", "bottle"]
    assert chosen.dim == predictor.model.config.text_dim
    wrong = Vocabulary(["x"], torch.nn.functional.normalize(torch.ones(1, 1, 7), dim=-1))
    with pytest.raises(VocabularyError, match="7-d"):
        predictor.set_vocabulary(wrong)
    assert predictor.vocabulary is chosen


def test_set_images_encodes_several_frames_in_one_pass_with_the_features_of_each_alone(
        monkeypatch: pytest.MonkeyPatch, model: OVSAM, vocabulary: Vocabulary) -> None:
    alone = OVSAMPredictor(model, vocabulary)
    together = OVSAMPredictor(model, vocabulary)
    frames = {"front": scene(0), "rear": scene(1, 120, 150)}  # two sizes: different resizes and paddings
    expected = {key: alone.predict(all_prompt_kinds()[:3], key=alone.set_image(image, key=key))
                for key, image in frames.items()}
    batch_sizes: list[int] = []
    encode = together.backend.encode_image
    monkeypatch.setattr(together.backend, "encode_image",
                        lambda pixels: batch_sizes.append(pixels.shape[0]) or encode(pixels))
    keys = together.set_images(list(frames.values()), list(frames), cache_groups=["front", "rear"])
    assert keys == ["front", "rear"] and batch_sizes == [2]
    for key in frames:
        cached, reference = together.cached_image(key), alone.cached_image(key)
        assert cached.features.embedding.shape[0] == 1
        assert (cached.height, cached.width) == (reference.height, reference.width)
        torch.testing.assert_close(cached.features.embedding, reference.features.embedding, atol=1e-4, rtol=1e-4)
        for got, want in zip(together.predict(all_prompt_kinds()[:3], key=key), expected[key]):
            assert got.label == want.label and got.box == want.box
            assert (got.mask != want.mask).mean() < 0.01
    assert together.set_images(list(frames.values()), list(frames)) == keys and batch_sizes == [2]  # cached
    # The last image is the default for predict.
    assert together.image_size() == (120, 150)


def test_set_images_splits_into_batches_the_backend_can_take(monkeypatch: pytest.MonkeyPatch, model: OVSAM,
                                                             vocabulary: Vocabulary) -> None:
    predictor = OVSAMPredictor(model, vocabulary, cache_size=8)
    batch_sizes: list[int] = []
    encode = predictor.backend.encode_image
    monkeypatch.setattr(predictor.backend, "encode_image",
                        lambda pixels: batch_sizes.append(pixels.shape[0]) or encode(pixels))
    monkeypatch.setattr(predictor.backend, "max_image_batch", 2)
    keys = predictor.set_images([scene(seed) for seed in range(5)])
    assert batch_sizes == [2, 2, 1] and len(set(keys)) == 5 and all(predictor.has_image(k) for k in keys)
    with pytest.raises(ValueError, match="2 images, 1 keys"):
        predictor.set_images([scene(0), scene(1)], ["only-one"])


def test_each_cache_group_evicts_only_its_own_images(model: OVSAM, vocabulary: Vocabulary) -> None:
    predictor = OVSAMPredictor(model, vocabulary, cache_size=2)
    predictor.set_image(scene(0), key=("front", 1), cache_group="front")
    for stamp in range(2, 6):  # a busy camera: four frames
        predictor.set_image(scene(stamp), key=("rear", stamp), cache_group="rear")
    assert predictor.has_image(("front", 1))  # the quiet camera's frame stays
    assert [predictor.has_image(("rear", stamp)) for stamp in range(2, 6)] == [False, False, True, True]
    predictor.set_images([scene(6), scene(7)], [("front", 6), ("front", 7)], cache_groups=["front", "front"])
    assert not predictor.has_image(("front", 1)) and predictor.has_image(("rear", 5))
    # More images than the group holds: the oldest go, the cached one named last among them.
    keys = predictor.set_images([scene(8), scene(9), scene(7)], [("front", 8), ("front", 9), ("front", 7)],
                                cache_groups=["front"] * 3)
    assert keys == [("front", 8), ("front", 9), ("front", 7)]
    assert [predictor.has_image(k) for k in keys] == [True, True, False] and predictor.has_image(("rear", 5))
