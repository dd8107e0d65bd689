"""Deformable-DETR encoder: post-norm layers of multi-scale deformable self-attention and an FFN.

Naming: ``B`` batch, ``S`` flattened positions of all levels, ``C`` channels, ``L`` levels.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniref.layers.ms_deform_attn import MSDeformAttn


def with_pos_embed(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class DeformableEncoderLayer(nn.Module):
    """Self-attention (deformable, query = src + pos) -> add & norm1 -> FFN (ReLU) -> add & norm2.

    State-dict names follow the official layer: ``self_attn``, ``norm1``, ``linear1``, ``linear2``, ``norm2``.
    """

    def __init__(
        self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1, n_levels: int = 4, n_heads: int = 8,
        n_points: int = 4,
    ):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Tensor | None,
        reference_points: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """``src`` ``[B, S, C]``, ``pos`` ``[B, S, C]``, ``reference_points`` ``[B, S, L, 2]``,
        ``padding_mask`` ``[B, S]`` (True = pad) -> ``[B, S, C]``."""
        src2 = self.self_attn(with_pos_embed(src, pos), reference_points, src, spatial_shapes, None, padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


def encoder_reference_points(
    spatial_shapes: Sequence[tuple[int, int]], valid_ratios: Tensor
) -> Tensor:
    """Pixel centres of every level, normalised by the valid (unpadded) size, seen from every level.

    Args:
        spatial_shapes: (h, w) per level.
        valid_ratios: ``[B, L, 2]`` (w, h) fraction of each level that is not padding.

    Returns:
        ``[B, S, L, 2]`` (x, y): the centre of each position in the valid-area frame of its own level,
        re-expressed in every level's padded frame.
    """
    device = valid_ratios.device
    per_level = []
    for level, (h, w) in enumerate(spatial_shapes):
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
            torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
            indexing="ij",
        )
        ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * h)
        ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * w)
        per_level.append(torch.stack((ref_x, ref_y), -1))
    reference_points = torch.cat(per_level, 1)
    return reference_points[:, :, None] * valid_ratios[:, None]


class DeformableEncoder(nn.Module):
    """A stack of identical :class:`DeformableEncoderLayer` (state-dict names ``layers.{i}``)."""

    def __init__(self, layer: DeformableEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(
        self,
        src: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        valid_ratios: Tensor,
        pos: Tensor | None = None,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """``src`` ``[B, S, C]``, ``valid_ratios`` ``[B, L, 2]``, ``pos`` ``[B, S, C]``,
        ``padding_mask`` ``[B, S]`` -> memory ``[B, S, C]``."""
        reference_points = encoder_reference_points(spatial_shapes, valid_ratios)
        output = src
        for layer in self.layers:
            output = layer(output, pos, reference_points, spatial_shapes, padding_mask)
        return output
