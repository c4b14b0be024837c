"""`ovsam-model vocab build` and `vocab show`, run through the real CLI entry point."""
from __future__ import annotations

import open_clip
import pytest
import torch

from ovsam_model.cli import main
from ovsam_model.vocabulary import (
    builtin_class_names,
    encode_class_names,
    load_vocabulary,
    load_vocabulary_file,
    save_vocabulary,
    text_model_key,
    vocabulary_cache_path,
)


@pytest.fixture(scope="module")
def encode_text():
    torch.manual_seed(0)
    clip = open_clip.model.CLIP(
        embed_dim=32,
        vision_cfg={"layers": 1, "width": 32, "patch_size": 16, "image_size": 32, "head_width": 16},
        text_cfg={"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=32)

    def encode(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return clip.encode_text(tokenizer(texts))

    return encode


def test_show_describes_a_vocabulary_file(tmp_path, encode_text, capsys):
    vocabulary = load_vocabulary(["red circle", "cat/kitten", "dog"], encode_text, model_key="tiny:abc",
                                 use_cache=False, progress=False)
    path = save_vocabulary(vocabulary, tmp_path / "shapes.pt")
    assert main(["vocab", "show", str(path), "--find", "dog"]) == 0
    out = capsys.readouterr().out
    assert "classes: 3" in out
    assert "synonyms per class: 2 (1 classes use more than one)" in out
    assert "embedding dim: 32" in out and "model key: tiny:abc" in out
    assert "names: red circle, cat/kitten, dog" in out
    assert "'dog': row 2, synonyms ['dog']" in out


def test_show_reads_a_released_style_tensor_with_its_class_list(tmp_path, encode_text, capsys):
    path = tmp_path / "coco.pth"
    torch.save(encode_class_names(encode_text, builtin_class_names("coco"), progress=False), path)
    assert main(["vocab", "show", str(path), "--classes", "coco", "--limit", "2", "--find", "persn"]) == 1
    captured = capsys.readouterr()
    assert "classes: 80" in captured.out and "names: person, bicycle, ... (78 more)" in captured.out
    assert "did you mean 'person'" in captured.err
    assert main(["vocab", "show", str(path)]) == 1
    assert "--classes" in capsys.readouterr().err


def test_show_reports_a_missing_file(tmp_path, capsys):
    assert main(["vocab", "show", str(tmp_path / "none.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_build_encodes_with_the_model_and_fills_the_cache(tmp_path, capsys, monkeypatch):
    from ovsam_model import checkpoint
    from ovsam_model.modeling.ovsam import OVSAM, build_model

    model = build_model("ovsam-tiny")
    weights = tmp_path / "weights"
    checkpoint.save_official_layout(model, weights)
    classes = tmp_path / "classes.txt"
    classes.write_text("# test classes\nred circle\nblue_square_or_box\n", encoding="utf-8")
    calls = []
    original = OVSAM.encode_text

    def counting_encode_text(self, texts):
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(OVSAM, "encode_text", counting_encode_text)
    out = tmp_path / "vocab.pt"
    cache = tmp_path / "cache"
    argv = ["vocab", "build", "--model", "ovsam-tiny", "--weights", str(weights), "--classes", str(classes),
            "--cache-dir", str(cache), "--quiet", "--batch-size", "8"]
    assert main(argv + ["--out", str(out)]) == 0
    assert max(calls) <= 8 and sum(calls) == 3 * 14

    vocabulary = load_vocabulary_file(out)
    model_key = text_model_key("ovsam-tiny", model.clip)
    assert vocabulary.names == ["red circle", "blue_square_or_box"]
    assert vocabulary.model_key == model_key and vocabulary.embeddings.shape == (2, 2, 32)
    expected = encode_class_names(lambda texts: original(model, texts), vocabulary.names, progress=False)
    torch.testing.assert_close(vocabulary.embeddings, expected, atol=1e-5, rtol=1e-4)
    assert vocabulary_cache_path(model_key, vocabulary.names, cache).exists()
    assert "classes: 2" in capsys.readouterr().out

    calls.clear()
    assert main(argv) == 0  # second build: served from the cache
    assert calls == []


def test_build_reports_a_bad_class_list(tmp_path, capsys):
    from ovsam_model import checkpoint
    from ovsam_model.modeling.ovsam import build_model

    weights = tmp_path / "weights"
    checkpoint.save_official_layout(build_model("ovsam-tiny"), weights)
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ncat\n", encoding="utf-8")
    argv = ["vocab", "build", "--model", "ovsam-tiny", "--weights", str(weights), "--classes", str(classes),
            "--no-cache"]
    assert main(argv) == 1
    assert "appears twice (line 1 and line 2)" in capsys.readouterr().err
