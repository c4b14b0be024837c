"""`ovsam-model load-check` on a good and a corrupted weights directory."""
from pathlib import Path

import torch

from ovsam_model import build_model, save_official_layout
from ovsam_model.cli import main


def _write_weights(directory: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    return save_official_layout(build_model("ovsam-tiny"), directory)


def test_load_check_passes_on_a_good_directory(tmp_path: Path, capsys) -> None:
    files = _write_weights(tmp_path)
    code = main(["load-check", "--weights", str(tmp_path), "--model", "ovsam-tiny"])
    out = capsys.readouterr().out
    assert code == 0
    for path in files.values():
        assert str(path) in out
    assert "neck_student" in out and "sha256" in out and "all weight files load strictly" in out


def test_load_check_names_the_file_and_key_of_a_corruption(tmp_path: Path, capsys) -> None:
    files = _write_weights(tmp_path)
    content = torch.load(files["decoder"], weights_only=True)
    del content["state_dict"]["mask_decoder.label_token.weight"]
    torch.save(content, files["decoder"])
    files["fpn"].unlink()
    code = main(["load-check", "--weights", str(tmp_path), "--model", "ovsam-tiny"])
    captured = capsys.readouterr()
    assert code == 1
    assert str(files["decoder"]) in captured.err and "mask_decoder.label_token.weight" in captured.err
    assert str(files["fpn"]) in captured.err and "ovsam-model download" in captured.err
    # The files that are fine are still reported.
    assert str(files["adapter"]) in captured.out


def test_load_check_takes_a_separate_clip_file(tmp_path: Path, capsys) -> None:
    files = _write_weights(tmp_path / "weights")
    clip = tmp_path / "clip.safetensors"
    files["clip"].rename(clip)
    assert main(["load-check", "--weights", str(tmp_path / "weights"), "--model", "ovsam-tiny"]) == 1
    capsys.readouterr()
    assert main(["load-check", "--weights", str(tmp_path / "weights"), "--clip-weights", str(clip),
                 "--model", "ovsam-tiny"]) == 0
