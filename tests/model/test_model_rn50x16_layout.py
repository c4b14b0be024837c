"""The released RN50x16 layout: module keys and shapes that the official files must match exactly."""
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling.prompt_encoder import PromptEncoder

from ovsam_model import build_model, get_config
from ovsam_model.modeling.clip2sam_head import CLIP2SAMHead
from ovsam_model.modeling.fpn import FPN
from ovsam_model.modeling.sam2clip_adapter import SAM2CLIPAdapter


@pytest.fixture(scope="module")
def config():
    return get_config("ovsam-rn50x16")


def _adapter(config) -> SAM2CLIPAdapter:
    a = config.adapter
    return SAM2CLIPAdapter(
        config.backbone_channels, config.backbone_strides, config.embedding_size, a["embed_dim"],
        config.prompt_embed_dim, a["depth"], a["num_heads"], a["mlp_ratio"], a["window_size"], a["global_attn_indexes"],
    )


def test_adapter_matches_the_released_sam2clip_file(config) -> None:
    state = _adapter(config).state_dict()
    assert len(state) == 86
    assert sum(tensor.numel() for tensor in state.values()) == 134_087_648
    shapes = {key: tuple(tensor.shape) for key, tensor in state.items()}
    assert shapes["pos_embed"] == (1, 64, 64, 1280)
    assert shapes["level_encoding.weight"] == (4, 1280)
    assert shapes["patch_embeds.0.projection.weight"] == (1280, 384, 4, 4)
    assert shapes["patch_embeds.1.projection.weight"] == (1280, 768, 2, 2)
    assert shapes["patch_embeds.2.projection.weight"] == (1280, 1536, 1, 1)
    assert shapes["patch_embeds.3.projection.weight"] == (3072, 1280, 2, 2)  # transposed conv
    for block in range(4):
        assert shapes[f"blocks.{block}.attn.rel_pos_h"] == (27, 80)
        assert shapes[f"blocks.{block}.attn.rel_pos_w"] == (27, 80)
    assert shapes["blocks.4.attn.rel_pos_h"] == (127, 80)
    assert shapes["neck.0.weight"] == (256, 1280, 1, 1) and "neck.0.bias" not in shapes
    assert shapes["neck.2.weight"] == (256, 256, 3, 3) and "neck.2.bias" not in shapes
    assert shapes["neck.1.weight"] == (256,) and shapes["neck.3.bias"] == (256,)


def test_head_matches_the_released_decoder_file(config) -> None:
    head = CLIP2SAMHead(
        config.prompt_embed_dim, config.decoder["depth"], config.decoder["num_heads"], config.decoder["mlp_dim"],
        config.text_dim, config.fpn_channels,
    )
    shapes = {key: tuple(tensor.shape) for key, tensor in head.state_dict().items()}
    assert not any("iou" in key for key in shapes)
    assert shapes["mask_decoder.mask_tokens.weight"] == (1, 256)
    assert "mask_decoder.output_hypernetworks_mlps.0.layers.2.weight" in shapes
    assert not any(key.startswith("mask_decoder.output_hypernetworks_mlps.1.") for key in shapes)
    assert shapes["mask_decoder.transformer.layers.0.self_attn.q_proj.weight"] == (256, 256)
    assert shapes["mask_decoder.transformer.layers.1.mlp.lin1.weight"] == (2048, 256)
    assert shapes["mask_decoder.transformer.final_attn_token_to_image.q_proj.weight"] == (128, 256)
    assert shapes["mask_decoder.output_upscaling.0.weight"] == (256, 64, 2, 2)
    assert shapes["mask_decoder.output_upscaling.3.weight"] == (64, 32, 2, 2)
    assert shapes["label_token.weight"] == (1, 256)
    assert shapes["label_mlp.layers.0.weight"] == (256, 256)
    assert shapes["label_mlp.layers.1.weight"] == (256, 256)
    assert shapes["label_mlp.layers.2.weight"] == (768, 256)
    assert shapes["roi_conv.0.conv.weight"] == (768, 256, 1, 1)
    assert "roi_conv.0.conv.bias" not in shapes
    # SAM's ViT-H decoder minus the IoU token/head and three of the four mask tokens.
    assert len(shapes) == 103


def test_fpn_and_prompt_encoder_keys(config) -> None:
    fpn = FPN(config.backbone_channels, config.fpn_channels).state_dict()
    assert sorted(fpn) == sorted(
        f"{kind}.{level}.conv.{param}"
        for kind in ("lateral_convs", "fpn_convs") for level in range(4) for param in ("weight", "bias")
    )
    assert fpn["lateral_convs.3.conv.weight"].shape == (256, 3072, 1, 1)
    assert fpn["fpn_convs.0.conv.weight"].shape == (256, 256, 3, 3)
    prompt = PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
        mask_in_chans=config.prompt_mask_in_chans,
    ).state_dict()
    assert prompt["pe_layer.positional_encoding_gaussian_matrix"].shape == (2, 128)
    assert len([key for key in prompt if key.startswith("point_embeddings.")]) == 4


def test_full_size_configuration_runs_end_to_end_at_a_smaller_input(config) -> None:
    started = time.monotonic()
    torch.manual_seed(0)
    model = build_model(config.replace(image_size=256))
    image = np.random.default_rng(0).integers(0, 255, size=(200, 256, 3), dtype=np.uint8)
    with torch.no_grad():
        pixels, scale = model.preprocess(image)
        features = model.encode_image(pixels)
        output = model.decode(
            features,
            points=torch.tensor([[[100.0, 80.0]], [[30.0, 40.0]]]),
            point_labels=torch.ones(2, 1),
            boxes=torch.tensor([[50.0, 40.0, 200.0, 150.0], [0.0, 0.0, 90.0, 90.0]]),
        )
        vocabulary = F.normalize(torch.randn(7, 2, 768), dim=-1)
        logits = model.classify(output.region_embedding, vocabulary)
        text = model.encode_text(["a photo of a cat."])
    assert features.embedding.shape == (1, 256, 16, 16)
    assert [level.shape[1] for level in features.fpn] == [256] * 4
    assert features.clip_last.shape == (1, 3072, 8, 8)
    assert output.mask_logits.shape == (2, 1, 64, 64)
    assert output.region_embedding.shape == (2, 768)
    assert logits.shape == (2, 8) and torch.isfinite(logits).all()
    assert text.shape == (1, 768)
    assert time.monotonic() - started < 120
