"""SAM built from Meta's modules: same layout as Meta's builders; batched decoding equals Meta's decoder."""

import torch
from segment_anything import build_sam_vit_b

from uniref.modeling.sam import SAM_ENCODERS
from uniref.modeling.sam.sam_backbone import build_sam, decode_masks, reference_prompt


def test_builder_matches_meta_builder_layout():
    with torch.device("meta"):
        ours = build_sam(SAM_ENCODERS["vit_b"])
        meta = build_sam_vit_b()
    a = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    assert a == b


def test_batched_decoder_equals_meta_decoder_per_entry():
    torch.manual_seed(0)
    sam = build_sam(SAM_ENCODERS["vit_b"], img_size=128).eval()  # 8x8 grid, decoder at full size
    b, c, g = 3, 256, 8
    emb = torch.randn(b, c, g, g)
    token = torch.randn(b, c)
    sparse, dense = reference_prompt(sam.prompt_encoder, token)
    assert sparse.shape == (b, 1, c) and dense.shape == (b, c, g, g)
    assert torch.equal(sparse[:, 0], token)
    assert torch.equal(dense[1, :, 3, 4], sam.prompt_encoder.no_mask_embed.weight[0])
    pe = sam.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        masks, iou = decode_masks(sam.mask_decoder, emb, pe, sparse, dense, multimask_output=False)
        assert masks.shape == (b, 1, 4 * g, 4 * g) and iou.shape == (b, 1)
        for i in range(b):
            ref_m, ref_iou = sam.mask_decoder(
                image_embeddings=emb[i : i + 1],
                image_pe=pe,
                sparse_prompt_embeddings=sparse[i : i + 1],
                dense_prompt_embeddings=dense[i : i + 1],
                multimask_output=False,
            )
            torch.testing.assert_close(masks[i : i + 1], ref_m, rtol=0, atol=1e-5)
            torch.testing.assert_close(iou[i : i + 1], ref_iou, rtol=0, atol=1e-6)
        multi, multi_iou = decode_masks(sam.mask_decoder, emb, pe, sparse, dense, multimask_output=True)
        assert multi.shape == (b, 3, 4 * g, 4 * g) and multi_iou.shape == (b, 3)
