"""What happens before and after the network matches the official OV-SAM code: PIL's bilinear
resize, the truncated resized shape, foreground = sigmoid(logit) > 0.5, and user weights under the
released file names."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ovsam_model import OVSAMPredictor, build_model
from ovsam_model.checkpoint import CheckpointError, save_official_layout
from ovsam_model.config import CONFIG_DIR
from ovsam_model.mask_postprocess import full_frame_masks, windowed_frame_masks
from ovsam_model.modeling.foreground import FOREGROUND_LOGIT
from ovsam_model.modeling.region_pooling import mask_logits_to_boxes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("ovsam-tiny")


def _unnormalised(model, pixels: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(model.config.pixel_mean)[:, None, None]
    std = torch.tensor(model.config.pixel_std)[:, None, None]
    return (pixels[0] * std + mean).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


# (100, 300) at the tiny model's 128: 42.67 rows, 42 truncated and 43 rounded.
@pytest.mark.parametrize("height, width", [(426, 640), (640, 426), (480, 640), (1080, 1920), (49, 49), (100, 300)])
def test_resized_shape_truncates_like_the_official_code(model, height, width) -> None:
    scale = model.config.image_size / max(height, width)
    assert model.resized_shape(height, width) == (int(height * scale), int(width * scale))


def test_a_426x640_frame_gets_the_official_height_at_1024() -> None:
    released = build_model("ovsam-tiny")
    released.config = type(released.config).from_dict({**json.loads((CONFIG_DIR / "ovsam-tiny.json").read_text()),
                                                        "image_size": 1024})
    assert released.resized_shape(426, 640) == (681, 1024)  # 681.6 truncated; rounding gave 682


@pytest.mark.parametrize("height, width", [(426, 640), (640, 426), (333, 500)])
def test_prompts_scale_per_axis_by_the_extent_preprocess_fills(model, height, width) -> None:
    # The picture fills the top-left of the padded input: its rows and columns over the original's
    # are where a prompt in original pixels lands. Truncation makes the two ratios differ.
    pixels, _ = model.preprocess(np.full((height, width, 3), 255, np.uint8))
    filled = _unnormalised(model, pixels)[..., 0] > 200  # white; the padding is the mean grey
    rows, columns = int(filled.any(axis=1).sum()), int(filled.any(axis=0).sum())
    assert model.input_scales(height, width) == (columns / width, rows / height)
    assert model.input_scales(height, width)[0] != model.input_scales(height, width)[1]


def test_a_shrunk_noisy_frame_is_resized_as_pil_bilinear_does(model) -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, size=(270, 480, 3), dtype=np.uint8)  # noisy, non-square, shrunk
    pixels, _ = model.preprocess(frame)
    height, width = model.resized_shape(270, 480)
    expected = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))
    got = _unnormalised(model, pixels)[:height, :width]
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # float round trip of the normalisation
    # Plain bilinear (no antialiasing) is far from it on noise: this is what the test guards.
    opencv = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    assert np.abs(opencv.astype(int) - expected.astype(int)).max() > 40
    # torch's antialiased bilinear is an independent implementation of the same filter.
    torch_resized = torch.nn.functional.interpolate(
        torch.from_numpy(frame).permute(2, 0, 1)[None].float(), (height, width), mode="bilinear",
        antialias=True, align_corners=False)[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    assert np.abs(torch_resized.astype(int) - expected.astype(int)).max() <= 1
    assert (pixels[..., height:, :] == 0).all() and (pixels[..., :, width:] == 0).all()


def test_foreground_is_sigmoid_above_one_half_in_float32(model) -> None:
    tiny = torch.tensor([0.0, 1e-8, 5e-8, FOREGROUND_LOGIT, float(np.nextafter(np.float32(FOREGROUND_LOGIT),
                                                                               np.float32(1))), 1e-7, 1.0])
    official = torch.sigmoid(tiny) > 0.5
    assert official.tolist() == [False, False, False, False, True, True, True]
    low = model.config.low_res_mask_size
    logits = torch.full((len(tiny), 1, low, low), -5.0)
    logits[:, 0, 10:20, 12:30] = tiny[:, None, None]  # a block at each value
    size = model.config.image_size
    for masks in (full_frame_masks(model, logits, (size, size)),
                  windowed_frame_masks(logits, size, (size, size), (size, size))):
        assert [bool(m.mask.any()) for m in masks] == official.tolist()
        assert [m.box is not None for m in masks] == official.tolist()
    boxes = mask_logits_to_boxes(logits)
    assert [bool(b.any()) for b in boxes] == official.tolist()


def _config_with_released_sam_name(tmp_path: Path) -> Path:
    data = json.loads((CONFIG_DIR / "ovsam-tiny.json").read_text())
    data["name"] = "tiny-released-names"
    data["weight_files"]["prompt_encoder"] = "sam_vit_h_4b8939.pth"
    data["weight_sha256"] = {"prompt_encoder": "a7bf3b02" + "0" * 56}  # not this file's digest
    path = tmp_path / "tiny-released-names.json"
    path.write_text(json.dumps(data))
    return path


def test_own_weights_under_the_released_sam_name_load_when_asked(tmp_path: Path) -> None:
    config_path = _config_with_released_sam_name(tmp_path)
    torch.manual_seed(1)
    source = build_model(str(config_path))
    weights = tmp_path / "weights"
    save_official_layout(source, weights)
    assert (weights / "sam_vit_h_4b8939.pth").is_file()
    with pytest.raises(CheckpointError, match="does not match the released file's"):
        OVSAMPredictor.from_pretrained(str(config_path), weights, device="cpu", vocabulary=["a", "b"])
    predictor = OVSAMPredictor.from_pretrained(str(config_path), weights, device="cpu", vocabulary=["a", "b"],
                                               verify_digests=False)
    for key, value in source.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[key], value), key


def test_the_cli_loads_them_with_no_verify_digests(tmp_path: Path) -> None:
    config_path = _config_with_released_sam_name(tmp_path)
    save_official_layout(build_model(str(config_path)), tmp_path / "weights")
    picture = tmp_path / "scene.png"
    cv2.imwrite(str(picture), np.full((48, 64, 3), 90, np.uint8))
    command = [sys.executable, "-m", "ovsam_model.cli", "segment", str(picture), "--model", str(config_path),
               "--weights", str(tmp_path / "weights"), "--vocab", str(tmp_path / "classes.txt"), "--box", "4,4,40,40",
               "--device", "cpu", "--out", str(tmp_path / "out.png")]
    (tmp_path / "classes.txt").write_text("mug\nbottle\n")
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert refused.returncode != 0 and "--no-verify-digests" in refused.stderr
    loaded = subprocess.run(command + ["--no-verify-digests"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    assert (tmp_path / "out.png").is_file()
