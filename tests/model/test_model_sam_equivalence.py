"""The CLIP2SAM mask path computes exactly what SAM's own MaskDecoder computes with the same weights.

SAM's decoder puts an IoU token first; OV-SAM puts its label token there. With the label token
set to SAM's IoU token, both must produce the same single-mask logits.
"""
import torch
from segment_anything.modeling.mask_decoder import MaskDecoder
from segment_anything.modeling.prompt_encoder import PromptEncoder
from segment_anything.modeling.transformer import TwoWayTransformer

from ovsam_model.modeling.clip2sam_head import CLIP2SAMHead


def test_mask_logits_equal_sams_single_mask_output() -> None:
    torch.manual_seed(0)
    dim, grid = 32, 8
    sam = MaskDecoder(
        transformer_dim=dim,
        transformer=TwoWayTransformer(depth=2, embedding_dim=dim, num_heads=2, mlp_dim=64),
        num_multimask_outputs=0,
        iou_head_depth=3,
        iou_head_hidden_dim=dim,
    ).eval()
    head = CLIP2SAMHead(dim, depth=2, num_heads=2, mlp_dim=64, text_dim=16, fpn_channels=8).eval()
    sam_state = {k: v for k, v in sam.state_dict().items() if not k.startswith("iou_")}
    head.mask_decoder.load_state_dict(sam_state, strict=True)
    head.label_token.weight.data.copy_(sam.iou_token.weight.data)

    prompts = PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(128, 128),
                            mask_in_chans=4)
    points = torch.tensor([[[30.0, 40.0], [90.0, 20.0]], [[64.0, 64.0], [10.0, 100.0]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    boxes = torch.tensor([[20.0, 30.0, 100.0, 110.0], [0.0, 0.0, 60.0, 60.0]])
    image_embedding = torch.randn(1, dim, grid, grid)
    with torch.no_grad():
        sparse, dense = prompts(points=(points, labels), boxes=boxes, masks=None)
        expected, _ = sam(image_embedding, prompts.get_dense_pe(), sparse, dense, multimask_output=False)
        got, label_embedding = head(image_embedding, prompts.get_dense_pe(), sparse, dense)
    assert got.shape == expected.shape == (2, 1, 4 * grid, 4 * grid)
    assert torch.allclose(got, expected, atol=1e-5)
    assert label_embedding.shape == (2, 16)
