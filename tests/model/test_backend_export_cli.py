"""`ovsam-model export-onnx`: files, manifest, the parity check, and usage errors."""
from __future__ import annotations

import json

import torch

from ovsam_model.backends.onnx_export import weights_fingerprint
from ovsam_model.checkpoint import load_weights, save_official_layout
from ovsam_model.cli import main
from ovsam_model.modeling.ovsam import build_model


def test_export_with_weights_checks_parity_and_writes_a_manifest(tmp_path, capsys) -> None:
    torch.manual_seed(3)
    save_official_layout(build_model("ovsam-tiny"), tmp_path / "weights")
    code = main(["export-onnx", "--model", "ovsam-tiny", "--weights", str(tmp_path / "weights"),
                 "--out", str(tmp_path / "onnx")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "onnxruntime matches PyTorch" in printed
    assert printed.count(" ok") == 12  # 3 image outputs + 3 outputs for each of the 3 prompt layouts
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["model"] == "ovsam-tiny" and manifest["opset"] >= 16
    for name in manifest["sha256"]:
        assert (tmp_path / "onnx" / name).stat().st_size > 0
    reloaded = build_model("ovsam-tiny")
    load_weights(reloaded, tmp_path / "weights")
    assert manifest["fingerprint"] == weights_fingerprint(reloaded)


def test_export_without_weights_says_they_are_random(tmp_path, capsys) -> None:
    assert main(["export-onnx", "--model", "ovsam-tiny", "--out", str(tmp_path), "--no-check"]) == 0
    printed = capsys.readouterr().out
    assert "random weights" in printed and "parity" not in printed


def test_export_usage_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["export-onnx", "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "unknown model configuration" in capsys.readouterr().err
    assert main(["export-onnx", "--model", "ovsam-tiny", "--weights", str(tmp_path / "missing"),
                 "--out", str(tmp_path)]) == 2
