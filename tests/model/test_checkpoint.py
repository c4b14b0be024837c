"""Weight files in the released layout: strict round trips and errors that name the file and key."""
import hashlib
from pathlib import Path

import open_clip
import pytest
import torch

from ovsam_model import OVSAM, CheckpointError, build_model, load_weights, save_official_layout
from ovsam_model.checkpoint import read_state_dict
from ovsam_model.modeling.clip_backbone import build_clip


def _tiny(seed: int) -> OVSAM:
    torch.manual_seed(seed)
    return build_model("ovsam-tiny")


@pytest.fixture(scope="module")
def source() -> OVSAM:
    return _tiny(0)


@pytest.fixture()
def weights(tmp_path: Path, source: OVSAM) -> dict[str, Path]:
    return save_official_layout(source, tmp_path)


def _raw(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _assert_same_weights(a: OVSAM, b: OVSAM) -> None:
    left, right = a.state_dict(), b.state_dict()
    assert left.keys() == right.keys()
    different = [key for key in left if not torch.equal(left[key], right[key])]
    assert not different, different[:5]


def test_files_have_the_released_names_and_prefixes(source: OVSAM, weights: dict[str, Path]) -> None:
    names = source.config.weight_files
    assert {role: path.name for role, path in weights.items()} == names
    prefixes = {
        "adapter": {"neck_student"},
        "decoder": {"mask_decoder"},
        "fpn": {"fpn_neck", "roi_conv"},
        "prompt_encoder": {"prompt_encoder"},
    }
    for role, expected in prefixes.items():
        content = _raw(weights[role])
        assert set(content) == {"state_dict"}
        assert {key.split(".", 1)[0] for key in content["state_dict"]} == expected
    decoder_keys = _raw(weights["decoder"])["state_dict"]
    assert "mask_decoder.mask_decoder.transformer.layers.0.self_attn.q_proj.weight" in decoder_keys
    assert "mask_decoder.roi_conv.0.conv.weight" in decoder_keys
    assert "mask_decoder.label_mlp.layers.2.weight" in decoder_keys
    assert "neck_student.pos_embed" in _raw(weights["adapter"])["state_dict"]


def test_official_layout_round_trips_strictly(source: OVSAM, weights: dict[str, Path], tmp_path: Path) -> None:
    target = _tiny(1)
    report = load_weights(target, tmp_path)
    _assert_same_weights(source, target)
    assert [item.role for item in report.files] == ["clip", "adapter", "prompt_encoder", "decoder", "fpn"]
    assert report.complete
    adapter = report.by_role("adapter")
    assert adapter.keys_loaded == adapter.keys_in_file == len(source.neck_student.state_dict())
    assert adapter.parameters_loaded == sum(v.numel() for v in source.neck_student.state_dict().values())
    assert adapter.sha256 == hashlib.sha256(weights["adapter"].read_bytes()).hexdigest()
    assert adapter.expected_sha256 is None and adapter.hash_verified is None
    assert "neck_student" in report.describe()


def test_the_same_weights_give_the_same_outputs(source: OVSAM, weights: dict[str, Path], tmp_path: Path) -> None:
    target = _tiny(2)
    load_weights(target, tmp_path)
    pixels = torch.randn(1, 3, 128, 128)
    boxes = torch.tensor([[10.0, 20.0, 90.0, 100.0]])
    with torch.no_grad():
        expected = source.decode(source.encode_image(pixels), boxes=boxes)
        got = target.decode(target.encode_image(pixels), boxes=boxes)
    assert torch.equal(expected.mask_logits, got.mask_logits)
    assert torch.equal(expected.region_embedding, got.region_embedding)


def test_renamed_key_fails_naming_file_and_key(weights: dict[str, Path], tmp_path: Path) -> None:
    path = weights["adapter"]
    state = _raw(path)["state_dict"]
    state["neck_student.blocks.0.attn.qkv_renamed.weight"] = state.pop("neck_student.blocks.0.attn.qkv.weight")
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as caught:
        load_weights(_tiny(1), tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert "missing keys: neck_student.blocks.0.attn.qkv.weight" in message
    assert "unexpected keys: neck_student.blocks.0.attn.qkv_renamed.weight" in message


def test_reshaped_key_fails_with_both_shapes(weights: dict[str, Path], tmp_path: Path) -> None:
    path = weights["fpn"]
    state = _raw(path)["state_dict"]
    state["fpn_neck.fpn_convs.2.conv.weight"] = state["fpn_neck.fpn_convs.2.conv.weight"][:, :, :1, :1].clone()
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as caught:
        load_weights(_tiny(1), tmp_path)
    message = str(caught.value)
    assert path.name in message and "fpn_neck" in message
    assert "fpn_neck.fpn_convs.2.conv.weight (file [32, 32, 1, 1] vs model [32, 32, 3, 3])" in message


def test_flat_files_and_extra_top_level_entries_load(source: OVSAM, weights: dict[str, Path], tmp_path: Path) -> None:
    for role in ("adapter", "decoder"):
        state = _raw(weights[role])["state_dict"]
        flat = dict(state)
        flat["meta"] = {"epoch": 12, "note": "extra entries are not weights"}
        torch.save(flat, weights[role])
    wrapped = _raw(weights["fpn"])
    wrapped["meta"] = {"mmdet_version": "3.x"}
    torch.save(wrapped, weights["fpn"])
    target = _tiny(1)
    load_weights(target, tmp_path)
    _assert_same_weights(source, target)


class _NotAWeight:
    def __init__(self) -> None:
        self.payload = "arbitrary python object"


def test_pickled_python_objects_are_refused(weights: dict[str, Path], tmp_path: Path) -> None:
    state = _raw(weights["adapter"])
    state["optimizer"] = _NotAWeight()
    torch.save(state, weights["adapter"])
    with pytest.raises(CheckpointError, match="weights_only") as caught:
        load_weights(_tiny(1), tmp_path)
    assert str(weights["adapter"]) in str(caught.value)


def test_fpn_file_roi_conv_overrides_the_decoder_file(weights: dict[str, Path], tmp_path: Path) -> None:
    decoder = _raw(weights["decoder"])
    fpn = _raw(weights["fpn"])
    shape = decoder["state_dict"]["mask_decoder.roi_conv.0.conv.weight"].shape
    decoder["state_dict"]["mask_decoder.roi_conv.0.conv.weight"] = torch.full(shape, 1.0)
    fpn["state_dict"]["roi_conv.0.conv.weight"] = torch.full(shape, 2.0)
    torch.save(decoder, weights["decoder"])
    torch.save(fpn, weights["fpn"])
    target = _tiny(1)
    load_weights(target, tmp_path)
    assert torch.equal(target.mask_decoder.roi_conv[0].conv.weight, torch.full(shape, 2.0))


def test_prompt_encoder_comes_from_a_full_sam_checkpoint(source: OVSAM, weights: dict[str, Path],
                                                         tmp_path: Path) -> None:
    path = weights["prompt_encoder"]
    state = _raw(path)["state_dict"]
    # SAM's own file is flat and also holds its image encoder and decoder.
    state["image_encoder.pos_embed"] = torch.zeros(1, 4, 4, 8)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 32)
    torch.save(state, path)
    target = _tiny(1)
    report = load_weights(target, tmp_path)
    assert report.by_role("prompt_encoder").ignored_keys == 2
    assert torch.equal(
        target.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
        source.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
    )


def test_stray_keys_in_an_ovsam_file_are_reported(weights: dict[str, Path], tmp_path: Path) -> None:
    state = _raw(weights["decoder"])
    state["state_dict"]["iou_prediction_head.layers.0.weight"] = torch.zeros(2, 2)
    torch.save(state, weights["decoder"])
    with pytest.raises(CheckpointError, match="iou_prediction_head.layers.0.weight"):
        load_weights(_tiny(1), tmp_path)


def test_missing_prefix_and_missing_file_messages(weights: dict[str, Path], tmp_path: Path) -> None:
    torch.save({"state_dict": {"something_else.weight": torch.zeros(1)}}, weights["adapter"])
    with pytest.raises(CheckpointError, match=r"no keys start with 'neck_student\.'.*something_else"):
        load_weights(_tiny(1), tmp_path)
    weights["adapter"].unlink()
    with pytest.raises(CheckpointError) as caught:
        load_weights(_tiny(1), tmp_path)
    assert str(weights["adapter"]) in str(caught.value) and "ovsam-model download" in str(caught.value)


def test_non_strict_loads_what_matches_and_lists_the_rest(source: OVSAM, weights: dict[str, Path],
                                                          tmp_path: Path) -> None:
    state = _raw(weights["adapter"])
    del state["state_dict"]["neck_student.level_encoding.weight"]
    torch.save(state, weights["adapter"])
    target = _tiny(1)
    report = load_weights(target, tmp_path, strict=False)
    assert report.by_role("adapter").missing_keys == ["neck_student.level_encoding.weight"]
    assert not report.complete
    assert torch.equal(target.neck_student.blocks[0].attn.qkv.weight, source.neck_student.blocks[0].attn.qkv.weight)


def test_a_declared_digest_is_checked(weights: dict[str, Path], tmp_path: Path) -> None:
    import dataclasses

    torch.manual_seed(1)
    actual = hashlib.sha256(weights["adapter"].read_bytes()).hexdigest()
    matching = dataclasses.replace(_tiny(1).config, weight_sha256={"adapter": actual})
    report = load_weights(build_model(matching), tmp_path)
    assert report.by_role("adapter").hash_verified is True
    wrong = dataclasses.replace(matching, weight_sha256={"adapter": "0" * 64})
    with pytest.raises(CheckpointError, match="SHA-256 .* does not match the released file's 0{64}"):
        load_weights(build_model(wrong), tmp_path)
    # Own weights under the released names: the check can be turned off explicitly.
    assert load_weights(build_model(wrong), tmp_path, verify_digests=False).by_role("adapter").hash_verified is None


def test_the_released_configuration_pins_sams_published_digest() -> None:
    from ovsam_model import get_config
    from ovsam_model.weight_files import expected_sha256

    released = get_config("ovsam-rn50x16")
    sam_file = released.weight_files["prompt_encoder"]
    assert released.weight_sha256 == {"prompt_encoder": expected_sha256(sam_file)}
    assert expected_sha256(sam_file).startswith("a7bf3b02")
    # The shipped model reuses the released file names for its own files, so it declares no digests.
    assert get_config("ovsam-shapes").weight_sha256 == {}


def test_clip_file_is_an_open_clip_checkpoint(source: OVSAM, weights: dict[str, Path], tmp_path: Path) -> None:
    clip = build_clip(source.config.clip)
    open_clip.load_checkpoint(clip, str(weights["clip"]))
    for key, value in source.clip.state_dict().items():
        assert torch.equal(clip.state_dict()[key], value), key
    # A .pth CLIP file elsewhere, passed explicitly, loads as well.
    elsewhere = tmp_path / "other" / "clip.pth"
    elsewhere.parent.mkdir()
    torch.save({"state_dict": read_state_dict(weights["clip"])}, elsewhere)
    weights["clip"].unlink()
    target = _tiny(1)
    load_weights(target, tmp_path, clip_weights=elsewhere)
    _assert_same_weights(source, target)


def test_released_style_rn50x16_files_load_strictly(tmp_path: Path) -> None:
    """Decoder, FPN and SAM files shaped like the released ones load into the RN50x16 modules."""
    from segment_anything.modeling.prompt_encoder import PromptEncoder

    from ovsam_model import get_config
    from ovsam_model.checkpoint import load_role
    from ovsam_model.modeling.clip2sam_head import CLIP2SAMHead
    from ovsam_model.modeling.fpn import FPN

    config = get_config("ovsam-rn50x16")

    def parts() -> torch.nn.Module:
        holder = torch.nn.Module()
        holder.mask_decoder = CLIP2SAMHead(256, 2, 8, 2048, 768, 256)
        holder.fpn_neck = FPN(config.backbone_channels, 256)
        holder.prompt_encoder = PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        )
        return holder

    torch.manual_seed(0)
    released = parts()
    decoder = {f"mask_decoder.{k}": v for k, v in released.mask_decoder.state_dict().items()}
    fpn = {f"fpn_neck.{k}": v for k, v in released.fpn_neck.state_dict().items()}
    fpn.update({f"roi_conv.{k}": v for k, v in released.mask_decoder.roi_conv.state_dict().items()})
    sam = {f"prompt_encoder.{k}": v for k, v in released.prompt_encoder.state_dict().items()}
    sam["image_encoder.neck.0.weight"] = torch.zeros(256, 1280, 1, 1)
    names = config.weight_files
    torch.save({"meta": {"mmdet": "3.3.0"}, "state_dict": decoder}, tmp_path / names["decoder"])
    torch.save(fpn, tmp_path / names["fpn"])
    torch.save(sam, tmp_path / names["prompt_encoder"])

    torch.manual_seed(1)
    target = parts()
    reports = [load_role(target, role, tmp_path / names[role]) for role in ("prompt_encoder", "decoder", "fpn")]
    assert [r.keys_loaded for r in reports] == [len(sam) - 1, 103, 17]
    for key, value in released.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
