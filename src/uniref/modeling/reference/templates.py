"""Mask reference dictionaries: building one from a reference image and mask, k-shot aggregation, and the
first+previous concatenation used in video.

Every function works on a batch of references at once (one entry per object), and returns the shared
:class:`ReferenceFeatures`. Keys are the reference *image* features; the object mask reaches the fusion
only through the values, and the pooled embedding is the mean of the whole image's features.

Naming: ``B`` references, ``K`` shots, ``N`` tokens of one level (``h * w``), ``C`` channels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from uniref.modeling.reference.features import ReferenceFeatures
from uniref.modeling.reference.mask_encoder import MaskReferenceEncoder


def masked_mean(tokens: Tensor, padding_mask: Tensor) -> Tensor:
    """Mean of ``tokens`` ``[B, N, C]`` over the positions where ``padding_mask`` ``[B, N]`` is False -> ``[B, C]``."""
    keep = (~padding_mask).to(tokens.dtype)
    return (tokens * keep[..., None]).sum(dim=1) / keep.sum(dim=1, keepdim=True)


def mask_reference(
    encoder: MaskReferenceEncoder,
    image: Tensor,
    mask: Tensor,
    srcs_ref: list[Tensor],
    masks_ref: list[Tensor],
) -> ReferenceFeatures:
    """Build mask reference dictionaries (official ``forward_template`` without aggregation).

    Args:
        encoder: the mask reference encoder.
        image: ``[B, 3, H, W]`` normalised reference images, zero-padded to a multiple of 32.
        mask: ``[B, 1, H, W]`` object masks (0/1, zero on padding).
        srcs_ref: per level ``[B, C, h, w]`` projected features of the same reference images.
        masks_ref: per level ``[B, h, w]`` bool padding masks of those features (True = padding).

    Returns:
        per level: ``refs`` = flattened ``srcs_ref`` ``[B, h*w, C]``, ``values`` = flattened encoder output,
        ``padding_mask`` ``[B, h*w]`` and ``embeds`` = mean of ``refs`` over the non-padding positions.
    """
    values = encoder(image, mask, srcs_ref)
    refs_l, values_l, pad_l, embeds_l = [], [], [], []
    for src, val, pad in zip(srcs_ref, values, masks_ref):
        refs = src.flatten(2).transpose(1, 2)  # [B, h*w, C]
        pad = pad.flatten(1).bool()
        refs_l.append(refs)
        values_l.append(val.flatten(2).transpose(1, 2))
        pad_l.append(pad)
        embeds_l.append(masked_mean(refs, pad))
    return ReferenceFeatures(refs_l, values_l, pad_l, embeds_l)


def aggregate_shots(ref: ReferenceFeatures, num_shots: int | None = None) -> ReferenceFeatures:
    """Merge ``K`` support references of each object into one (FSS k-shot inference).

    Args:
        ref: a reference with ``B * K`` entries, object-major (entries ``b*K .. b*K + K-1`` are the shots
            of object ``b``).
        num_shots: ``K``; None means the whole batch holds the shots of one object.

    Returns:
        ``B`` entries: per level, the shots' tokens and padding concatenated along the token axis
        (``[B, K*N, C]``, shot order kept) and ``embeds`` = the mean of the shots' embeddings.
    """
    total = ref.batch_size
    k = total if num_shots is None else num_shots
    if k < 1 or total % k:
        raise ValueError(f"cannot split {total} references into groups of {k} shots")
    b = total // k

    def tokens(t: Tensor) -> Tensor:  # [B*K, N, ...] -> [B, K*N, ...]
        return t.reshape(b, k * t.shape[1], *t.shape[2:])

    return ReferenceFeatures(
        [tokens(t) for t in ref.refs],
        [tokens(t) for t in ref.values],
        [tokens(t) for t in ref.padding_mask],
        [e.reshape(b, k, -1).mean(dim=1) for e in ref.embeds],
    )


def concat_references(first: ReferenceFeatures, second: ReferenceFeatures) -> ReferenceFeatures:
    """Join two references of the same objects along the token axis (video: ``[init, prev]``).

    Per level, ``refs``, ``values`` and ``padding_mask`` are concatenated (``first`` then ``second``) and
    ``embeds`` is the mean of the two. Both must have the same batch size and number of levels.
    """
    if first.num_levels != second.num_levels or first.batch_size != second.batch_size:
        raise ValueError(
            f"cannot concatenate references with {first.num_levels}/{second.num_levels} levels and "
            f"{first.batch_size}/{second.batch_size} entries"
        )
    return ReferenceFeatures(
        [torch.cat(p, dim=1) for p in zip(first.refs, second.refs)],
        [torch.cat(p, dim=1) for p in zip(first.values, second.values)],
        [torch.cat(p, dim=1) for p in zip(first.padding_mask, second.padding_mask)],
        [(a + b) / 2 for a, b in zip(first.embeds, second.embeds)],
    )
