"""Open vocabularies: synonym rule, template averaging, caching, files and validation.

Embeddings come from a real (tiny, randomly initialised) open_clip text tower with open_clip's
own BPE tokenizer; only the 20,000-class chunking test uses a cheap fake encoder.
"""
from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from ovsam_model.text_prompts import VILD_TEMPLATES, fill_templates, split_synonyms
from ovsam_model.vocabulary import (
    BUILTIN_CLASS_LISTS,
    UnknownClassError,
    Vocabulary,
    VocabularyError,
    builtin_class_names,
    default_cache_dir,
    encode_class_names,
    load_embedding_file,
    load_vocabulary,
    load_vocabulary_file,
    pad_synonyms,
    read_class_file,
    save_vocabulary,
    text_model_key,
    vocabulary_cache_path,
)

TAPE = "tape_(sticky_cloth_or_paper)"
TAPE_ROW = 1060  # 0-based row in LVIS v1 order (category id 1061)


def build_tiny_clip(seed: int = 0) -> open_clip.model.CLIP:
    torch.manual_seed(seed)
    return open_clip.model.CLIP(
        embed_dim=32,
        vision_cfg={"layers": 1, "width": 32, "patch_size": 16, "image_size": 32, "head_width": 16},
        text_cfg={"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()


class CountingEncoder:
    """Wraps an encode_text callable and records how it was called."""

    def __init__(self, encode):
        self.encode = encode
        self.calls = 0
        self.sentences: list[str] = []
        self.largest_batch = 0

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        self.sentences.extend(texts)
        self.largest_batch = max(self.largest_batch, len(texts))
        return self.encode(texts)


@pytest.fixture(scope="module")
def tiny_clip():
    return build_tiny_clip()


@pytest.fixture(scope="module")
def encode_text(tiny_clip):
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=32)

    def encode(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return tiny_clip.encode_text(tokenizer(texts))

    return encode


@pytest.fixture
def counting(encode_text):
    return CountingEncoder(encode_text)


@pytest.fixture(scope="module")
def lvis_embeddings(encode_text):
    return encode_class_names(encode_text, builtin_class_names("lvis"), progress=False)


def assert_unit_norm(embeddings: torch.Tensor) -> None:
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(embeddings.shape[:-1]), atol=1e-5, rtol=0)


# --- text prompts --------------------------------------------------------------------------


def test_builtin_lists_have_their_standard_sizes_and_order():
    coco, lvis = builtin_class_names("coco"), builtin_class_names("lvis")
    assert len(coco) == 80 and coco[0] == "person" and coco[-1] == "toothbrush"
    assert len(lvis) == 1203 and lvis[0] == "aerosol_can" and lvis[-1] == "zucchini"
    assert lvis[TAPE_ROW] == TAPE
    assert len(set(lvis)) == 1203
    assert set(BUILTIN_CLASS_LISTS) == {"coco", "lvis"}


def test_synonym_rule_on_real_lvis_names():
    lvis = builtin_class_names("lvis")
    counts = [len(split_synonyms(name)) for name in lvis]
    # The released LVIS tensor is (1203, 2, 768) because exactly this one name splits in two.
    assert [row for row, count in enumerate(counts) if count != 1] == [TAPE_ROW]
    assert split_synonyms(TAPE) == ["tape (sticky cloth", "paper)"]
    assert split_synonyms("aerosol_can") == ["aerosol can"]
    assert split_synonyms("yoke_(animal_equipment)") == ["yoke (animal equipment)"]


@pytest.mark.parametrize(
    ("name", "synonyms"),
    [
        ("Traffic Light", ["traffic light"]),
        ("cat/kitten", ["cat", "kitten"]),
        ("mug_or_cup, beaker", ["mug", "cup", "beaker"]),
        ("dog,, puppy ,", ["dog", "puppy"]),
        (",/,", []),
    ],
)
def test_synonym_rule_cases(name, synonyms):
    assert split_synonyms(name) == synonyms


def test_vild_templates_are_fourteen_distinct_single_slot_templates():
    assert len(VILD_TEMPLATES) == 14 == len(set(VILD_TEMPLATES))
    assert all(template.count("{}") == 1 for template in VILD_TEMPLATES)
    assert fill_templates("cat")[0] == "a photo of a cat."


# --- encoding --------------------------------------------------------------------------------


def test_lvis_encodes_to_the_released_layout(lvis_embeddings):
    assert lvis_embeddings.shape == (1203, 2, 32)
    assert lvis_embeddings.dtype == torch.float32
    assert_unit_norm(lvis_embeddings)
    single = torch.ones(1203, dtype=torch.bool)
    single[TAPE_ROW] = False
    # Every class but the tape repeats its only synonym; the tape's two synonyms differ.
    torch.testing.assert_close(lvis_embeddings[single, 1], lvis_embeddings[single, 0], atol=0, rtol=0)
    assert not torch.allclose(lvis_embeddings[TAPE_ROW, 0], lvis_embeddings[TAPE_ROW, 1])


def test_template_average_matches_a_direct_computation(encode_text):
    embeddings = encode_class_names(encode_text, ["traffic_light", "cat/kitten"], progress=False)
    for row, synonym_row, synonym in [(0, 0, "traffic light"), (1, 0, "cat"), (1, 1, "kitten")]:
        per_template = encode_text([template.format(synonym) for template in VILD_TEMPLATES])
        expected = F.normalize(F.normalize(per_template, dim=-1).mean(dim=0), dim=0)
        torch.testing.assert_close(embeddings[row, synonym_row], expected, atol=1e-6, rtol=1e-5)


def test_classes_with_fewer_synonyms_repeat_their_first(encode_text):
    embeddings = encode_class_names(encode_text, ["cat/kitten/kitty", "dog", "bird_or_fowl"], progress=False)
    assert embeddings.shape == (3, 3, 32)
    assert_unit_norm(embeddings)
    alone = encode_class_names(encode_text, ["dog"], progress=False)
    for column in range(3):
        torch.testing.assert_close(embeddings[1, column], alone[0, 0])
    torch.testing.assert_close(embeddings[2, 2], embeddings[2, 0], atol=0, rtol=0)
    assert not torch.allclose(embeddings[2, 1], embeddings[2, 0])
    assert len({tuple(embeddings[0, column].tolist()) for column in range(3)}) == 3


def test_batch_size_does_not_change_the_result(encode_text):
    names = ["cat/kitten", "dog", "traffic light"]
    small = CountingEncoder(encode_text)
    tiny_batches = encode_class_names(small, names, batch_size=5, progress=False)
    whole = encode_class_names(encode_text, names, batch_size=1000, progress=False)
    assert small.largest_batch == 5 and small.calls == math.ceil(4 * 14 / 5)
    torch.testing.assert_close(tiny_batches, whole, atol=1e-6, rtol=1e-5)


def test_twenty_thousand_classes_encode_in_bounded_batches():
    def cheap_encode(texts: list[str]) -> torch.Tensor:  # only the batching is under test here
        lengths = torch.tensor([float(len(text)) for text in texts])
        return torch.stack([torch.ones_like(lengths), lengths, lengths.sin()], dim=1)

    counting = CountingEncoder(cheap_encode)
    names = [f"class {index}" for index in range(20_000)]
    embeddings = encode_class_names(counting, names, batch_size=512, progress=False)
    sentences = 20_000 * len(VILD_TEMPLATES)
    assert embeddings.shape == (20_000, 1, 3)
    assert counting.largest_batch == 512
    assert counting.calls == math.ceil(sentences / 512)
    assert len(counting.sentences) == sentences
    assert_unit_norm(embeddings)


def test_encoder_output_is_checked():
    with pytest.raises(VocabularyError, match=r"\[T, D\]"):
        encode_class_names(lambda texts: torch.ones(len(texts) + 1, 4), ["cat"], progress=False)
    with pytest.raises(VocabularyError, match="zero or non-finite"):
        encode_class_names(lambda texts: torch.zeros(len(texts), 4), ["cat"], progress=False)


def test_pad_synonyms_repeats_first_row():
    embeddings = F.normalize(torch.randn(2, 1, 4), dim=-1)
    padded = pad_synonyms(embeddings, 3)
    assert padded.shape == (2, 3, 4)
    assert torch.equal(padded[:, 2], embeddings[:, 0])


# --- the Vocabulary type --------------------------------------------------------------------


def test_vocabulary_index_subset_and_errors(encode_text):
    vocabulary = load_vocabulary(["cat", "dog", "zebra"], encode_text, model_key="tiny", use_cache=False,
                                 progress=False)
    assert vocabulary.size == len(vocabulary) == 3 and vocabulary.dim == 32 and vocabulary.synonym_count == 1
    assert vocabulary.index("dog") == 1 and "zebra" in vocabulary and "lion" not in vocabulary
    with pytest.raises(UnknownClassError, match="did you mean 'zebra'"):
        vocabulary.index("zebras")
    subset = vocabulary.subset(["zebra", "cat"])
    assert subset.names == ["zebra", "cat"]
    assert torch.equal(subset.embeddings, vocabulary.embeddings[[2, 0]])
    with pytest.raises(VocabularyError, match="names but"):
        Vocabulary(["a"], torch.ones(2, 1, 4))
    with pytest.raises(VocabularyError, match="appears twice"):
        Vocabulary(["a", "a"], torch.ones(2, 1, 4))
    with pytest.raises(VocabularyError, match=r"'mug' appears twice \(entry 0 and entry 2, spelled 'Mug'"):
        Vocabulary(["mug", "cup", "Mug"], torch.ones(3, 1, 4))


def test_extend_reuses_existing_rows_and_encodes_only_new_names(encode_text, counting):
    base = load_vocabulary(["cat", "dog"], encode_text, model_key="tiny", use_cache=False, progress=False)
    extended = base.extend(["dog", " zebra ", "bird_or_fowl", "zebra"], counting)
    assert extended.names == ["cat", "dog", "zebra", "bird_or_fowl"]
    assert extended.synonym_count == 2
    # Only the three new synonyms were encoded: nothing about cats or dogs.
    assert len(counting.sentences) == 3 * len(VILD_TEMPLATES)
    assert not any("cat" in sentence or "dog" in sentence for sentence in counting.sentences)
    assert torch.equal(extended.embeddings[:2, 0], base.embeddings[:, 0])
    assert torch.equal(extended.embeddings[:2, 1], base.embeddings[:, 0])
    direct = encode_class_names(encode_text, ["zebra", "bird_or_fowl"], progress=False)
    torch.testing.assert_close(extended.embeddings[2:], direct)
    assert base.names == ["cat", "dog"]  # the original is untouched
    calls = counting.calls
    assert extended.extend(["cat", "zebra"], counting) is extended
    # A name is present when its class is: other case, '_' for ' ' and spacing find the same row.
    assert extended.extend(["Cat", " ZEBRA", "Bird  or fowl"], counting) is extended
    assert counting.calls == calls
    # Repeats of one class in the names to add are merged, keeping the first spelling.
    assert extended.extend(["Lion", "lion", " LION "], counting).names[-1:] == ["Lion"]


# --- loading, validation, cache ----------------------------------------------------------------


def test_class_file_parsing(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\ufeff# my classes\n\n  red circle  \n# skipped\nblue_square\r\n\n", encoding="utf-8")
    assert read_class_file(path) == ["red circle", "blue_square"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"# only a comment\n\n", "holds no class names"),
        (b"cat\ndog\ncat\n", r"appears twice \(line 1 and line 3\)"),
        (b"Tennis racket\ndog\ntennis_racket\n", r"'Tennis racket' appears twice \(line 1 and line 3, spelled"),
        (b"x" * 201 + b"\n", "201 characters long"),
        (b"a\nb\nc\nd\n", "more than the limit of 3"),
        (b"cat\n\xff\xfedog\n", "not UTF-8"),
        (b"cat\x00dog", "binary file"),
        (b"cat\n,/\n", "line 2.*no words"),
    ],
)
def test_class_file_validation_errors(tmp_path, encode_text, content, message):
    path = tmp_path / "classes.txt"
    path.write_bytes(content)
    with pytest.raises(VocabularyError, match=message):
        load_vocabulary(path, encode_text, model_key="tiny", cache_dir=tmp_path, max_classes=3)


def test_missing_file_and_bad_lists_are_refused(tmp_path, encode_text):
    with pytest.raises(VocabularyError, match="does not exist"):
        load_vocabulary(tmp_path / "nope.txt", encode_text, model_key="tiny", cache_dir=tmp_path)
    with pytest.raises(VocabularyError, match="holds no class names"):
        load_vocabulary([], encode_text, model_key="tiny", cache_dir=tmp_path)
    with pytest.raises(VocabularyError, match="appears twice"):
        load_vocabulary(["cat", " cat"], encode_text, model_key="tiny", cache_dir=tmp_path)
    with pytest.raises(VocabularyError, match="empty"):
        load_vocabulary(["cat", "  "], encode_text, model_key="tiny", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="model_key"):
        load_vocabulary(["cat"], encode_text, model_key="", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_hit_does_not_call_the_encoder(tmp_path, counting):
    first = load_vocabulary("coco", counting, model_key="tiny-a", cache_dir=tmp_path, progress=False)
    assert first.source == "coco" and first.size == 80 and first.model_key == "tiny-a"
    calls = counting.calls
    assert calls > 0
    second = load_vocabulary("coco", counting, model_key="tiny-a", cache_dir=tmp_path, progress=False)
    assert counting.calls == calls
    assert torch.equal(second.embeddings, first.embeddings) and second.names == first.names
    # Another text encoder or another class list must not reuse the file.
    load_vocabulary("coco", counting, model_key="tiny-b", cache_dir=tmp_path, progress=False)
    assert counting.calls > calls
    calls = counting.calls
    load_vocabulary(builtin_class_names("coco")[:5], counting, model_key="tiny-a", cache_dir=tmp_path, progress=False)
    assert counting.calls > calls
    files = sorted(path.name for path in tmp_path.iterdir())
    assert len(files) == 3 and all(name.endswith(".pt") for name in files)  # no temporary files left


def test_cache_directory_follows_the_environment(tmp_path, monkeypatch, counting):
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "vocab"
    load_vocabulary(["cat"], counting, model_key="tiny", progress=False)
    assert vocabulary_cache_path("tiny", ["cat"]).exists()
    monkeypatch.delenv("OVSAM_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "ovsam_ros" / "vocab"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_names", "not_unit_norm"])
def test_corrupt_cache_is_rebuilt(tmp_path, counting, damage):
    names = ["cat", "dog/puppy"]
    good = load_vocabulary(names, counting, model_key="tiny", cache_dir=tmp_path, progress=False)
    path = vocabulary_cache_path("tiny", names, tmp_path)
    if damage == "garbage":
        path.write_bytes(b"this is not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "other_names":
        save_vocabulary(Vocabulary(["cow", "pig"], good.embeddings, model_key="tiny"), path)
    else:
        save_vocabulary(Vocabulary(names, good.embeddings * 3, model_key="tiny"), path)
    calls = counting.calls
    rebuilt = load_vocabulary(names, counting, model_key="tiny", cache_dir=tmp_path, progress=False)
    assert counting.calls > calls
    torch.testing.assert_close(rebuilt.embeddings, good.embeddings)
    assert load_vocabulary_file(path).names == names  # the cache file was repaired


def test_unwritable_cache_does_not_stop_loading(tmp_path, encode_text):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    vocabulary = load_vocabulary(["cat"], encode_text, model_key="tiny", cache_dir=blocker / "vocab", progress=False)
    assert vocabulary.names == ["cat"]


# --- files ------------------------------------------------------------------------------------


def test_vocabulary_file_round_trip(tmp_path, encode_text):
    vocabulary = load_vocabulary(["cat/kitten", "dog"], encode_text, model_key="tiny", use_cache=False, progress=False)
    path = save_vocabulary(vocabulary, tmp_path / "sub" / "vocab.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "ovsam_vocabulary" and raw["version"] == 1
    assert raw["names"] == ["cat/kitten", "dog"] and raw["embeddings"].shape == (2, 2, 32)
    loaded = load_vocabulary_file(path)
    assert loaded.names == vocabulary.names and loaded.source == "names" and loaded.model_key == "tiny"
    assert torch.equal(loaded.embeddings, vocabulary.embeddings)
    assert [p.name for p in path.parent.iterdir()] == ["vocab.pt"]


def test_released_embedding_file(tmp_path, lvis_embeddings):
    path = tmp_path / "lvis.pth"
    torch.save(lvis_embeddings.clone(), path)
    vocabulary = load_embedding_file(path, "lvis")
    assert vocabulary.size == 1203 and vocabulary.synonym_count == 2 and vocabulary.source == "lvis"
    assert vocabulary.index(TAPE) == TAPE_ROW
    with pytest.raises(VocabularyError, match="1203 classes but 'coco' names 80"):
        load_embedding_file(path, "coco")
    with pytest.raises(VocabularyError, match="bare embedding tensor"):
        load_vocabulary_file(path)
    torch.save(lvis_embeddings * 2, tmp_path / "scaled.pth")
    with pytest.raises(VocabularyError, match="not unit norm"):
        load_embedding_file(tmp_path / "scaled.pth", "lvis")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(VocabularyError, match="cannot be read as a torch file"):
        load_embedding_file(tmp_path / "text.pth", "lvis")
    with pytest.raises(VocabularyError, match="does not exist"):
        load_vocabulary_file(tmp_path / "missing.pt")


def test_a_saved_vocabulary_is_refused_as_a_class_list(tmp_path, encode_text):
    vocabulary = load_vocabulary(["cat"], encode_text, model_key="tiny", use_cache=False, progress=False)
    path = save_vocabulary(vocabulary, tmp_path / "vocab.pt")
    with pytest.raises(VocabularyError, match="load_vocabulary_file"):
        load_vocabulary(path, encode_text, model_key="tiny", cache_dir=tmp_path)


# --- model keys -------------------------------------------------------------------------------


def test_text_model_key_follows_text_weights_only():
    clip = build_tiny_clip(seed=0)
    key = text_model_key("tiny", clip)
    assert key == text_model_key("tiny", build_tiny_clip(seed=0))
    assert key != text_model_key("other", clip)
    with torch.no_grad():
        next(clip.visual.parameters()).add_(1.0)
    assert text_model_key("tiny", clip) == key
    with torch.no_grad():
        clip.text_projection.add_(1.0)
    assert text_model_key("tiny", clip) != key
