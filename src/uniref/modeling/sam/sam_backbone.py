"""SAM itself, from Meta's ``segment-anything`` package, plus the two batched calls UniRef-SAM needs.

The modules are Meta's (so official ``sam_vit_{b,l,h}`` checkpoints load by name); only the builder is
ours, because Meta's hard-codes the 1024-pixel input and we allow a smaller one for CPU tests.

Naming: ``B`` prompts (one per image here), ``C`` the prompt dimension (256), ``g`` the side of the
image-embedding grid (``img_size / 16``), ``S`` the padded input side (``img_size``).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from uniref.modeling.sam.config import SamEncoderConfig

try:
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the UniRef-SAM models need Meta's pure-Python `segment-anything` package: pip install segment-anything"
    ) from exc


def build_sam(
    encoder: SamEncoderConfig,
    *,
    img_size: int = 1024,
    prompt_dim: int = 256,
    mask_in_chans: int = 16,
    decoder_depth: int = 2,
    decoder_mlp_dim: int = 2048,
    decoder_num_heads: int = 8,
    num_multimask_outputs: int = 3,
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53),
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375),
) -> Sam:
    """A randomly initialised SAM with the layout of ``segment_anything.build_sam_vit_*``.

    With the defaults and a :data:`~uniref.modeling.sam.config.SAM_ENCODERS` entry this is exactly
    Meta's ``build_sam_vit_{b,l,h}()`` (same modules, same arguments), without loading anything.
    """
    grid = img_size // encoder.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=encoder.depth,
            embed_dim=encoder.embed_dim,
            img_size=img_size,
            mlp_ratio=encoder.mlp_ratio,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=encoder.num_heads,
            patch_size=encoder.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=encoder.global_attn_indexes,
            window_size=encoder.window_size,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=decoder_depth, embedding_dim=prompt_dim, mlp_dim=decoder_mlp_dim, num_heads=decoder_num_heads
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(pixel_mean),
        pixel_std=list(pixel_std),
    )


def reference_prompt(prompt_encoder: PromptEncoder, token: Tensor) -> tuple[Tensor, Tensor]:
    """Prompt embeddings for "no points, no boxes, no mask" plus one extra sparse token.

    The official UniRef-SAM prompt encoder appends the pooled reference embedding to the (here empty)
    sparse embeddings; the dense prompt stays ``no_mask_embed``.

    Args:
        token: ``[B, C]`` pooled reference embedding.
    Returns:
        ``(sparse [B, 1, C], dense [B, C, g, g])``.
    """
    sparse, dense = prompt_encoder(points=None, boxes=None, masks=None)  # [1, 0, C], [1, C, g, g]
    b = token.shape[0]
    sparse = torch.cat([sparse.to(token.dtype).expand(b, -1, -1), token[:, None, :]], dim=1)
    return sparse, dense.expand(b, -1, -1, -1)


def decode_masks(
    mask_decoder: MaskDecoder,
    image_embeddings: Tensor,
    image_pe: Tensor,
    sparse_prompt_embeddings: Tensor,
    dense_prompt_embeddings: Tensor,
    *,
    multimask_output: bool = False,
) -> tuple[Tensor, Tensor]:
    """SAM's mask decoder for a batch of (image, prompt) pairs.

    Meta's ``MaskDecoder.forward`` pairs ONE image with a batch of prompts (it ``repeat_interleave``s the
    image embedding over the prompts); here every batch entry has its own, fused, image embedding. The
    computation per entry is Meta's ``predict_masks`` unchanged, run on the same submodules.

    Args:
        image_embeddings: ``[B, C, g, g]``.
        image_pe: ``[1, C, g, g]`` (``prompt_encoder.get_dense_pe()``).
        sparse_prompt_embeddings: ``[B, N, C]``.
        dense_prompt_embeddings: ``[B, C, g, g]``.
        multimask_output: False keeps the single-mask output token (the UniRef-SAM choice).
    Returns:
        ``(low_res_masks [B, M, 4g, 4g], iou_predictions [B, M])`` with ``M`` = 1 or 3.
    """
    b = image_embeddings.shape[0]
    output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings), dim=1)
    src = image_embeddings + dense_prompt_embeddings
    pos_src = image_pe.expand(b, -1, -1, -1)
    _, c, h, w = src.shape
    hs, src = mask_decoder.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : 1 + mask_decoder.num_mask_tokens, :]
    upscaled = mask_decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(mask_decoder.output_hypernetworks_mlps)], dim=1
    )
    _, cu, hu, wu = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
    iou_pred = mask_decoder.iou_prediction_head(iou_token_out)
    keep = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, keep], iou_pred[:, keep]
