"""Deformable-DETR decoder with iterative box refinement and look-forward-twice.

The official decoder stores aliases of the detection heads (``decoder.bbox_embed``); here the box heads are
an argument of :meth:`DeformableDecoder.forward`, so each parameter has one name.

Naming: ``B`` batch, ``Q`` queries, ``S`` flattened memory positions, ``C`` channels, ``L`` levels.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniref.layers.box_ops import inverse_sigmoid
from uniref.layers.ms_deform_attn import MSDeformAttn
from uniref.modeling.transformer.encoder import with_pos_embed


class DeformableDecoderLayer(nn.Module):
    """Self-attention -> add & norm2 -> deformable cross-attention -> add & norm1 -> FFN -> add & norm3.

    State-dict names follow the official layer: ``cross_attn``, ``norm1``, ``self_attn``
    (``nn.MultiheadAttention``), ``norm2``, ``linear1``, ``linear2``, ``norm3``.
    """

    def __init__(
        self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1, n_levels: int = 4, n_heads: int = 8,
        n_points: int = 4,
    ):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor | None,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        memory_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """``tgt``/``query_pos`` ``[B, Q, C]``, ``reference_points`` ``[B, Q, L, 2|4]``, ``memory`` ``[B, S, C]``,
        ``memory_padding_mask`` ``[B, S]`` (True = pad) -> ``[B, Q, C]``."""
        q = k = with_pos_embed(tgt, query_pos)
        # need_weights=False takes the fused attention path; it differs from the official weighted path only in
        # float rounding (~1e-6)
        tgt2 = self.self_attn(q, k, tgt, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.cross_attn(
            with_pos_embed(tgt, query_pos), reference_points, memory, spatial_shapes, None, memory_padding_mask
        )
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(tgt2))


class DeformableDecoder(nn.Module):
    """A stack of identical :class:`DeformableDecoderLayer` (state-dict names ``layers.{i}``).

    Args:
        layer: the layer to clone.
        num_layers: number of layers.
        look_forward_twice: store the refined boxes before ``detach`` so a layer's box loss also trains the
            previous layer's box head (the next layer still receives detached boxes).
    """

    def __init__(self, layer: DeformableDecoderLayer, num_layers: int, look_forward_twice: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.look_forward_twice = look_forward_twice

    def forward(
        self,
        tgt: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        valid_ratios: Tensor,
        query_pos: Tensor | None = None,
        memory_padding_mask: Tensor | None = None,
        bbox_embed: Sequence[nn.Module] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run all layers, refining the reference boxes after each one when ``bbox_embed`` is given.

        Args:
            tgt: ``[B, Q, C]`` content queries.
            reference_points: ``[B, Q, 4]`` sigmoid boxes (cx, cy, w, h) relative to the valid image area
                (two-stage proposals; the 2-d reference of single-stage Deformable DETR is not supported).
            memory: ``[B, S, C]`` encoder output.
            spatial_shapes: (h, w) per level.
            valid_ratios: ``[B, L, 2]`` (w, h).
            query_pos: ``[B, Q, C]``.
            memory_padding_mask: ``[B, S]`` True = pad.
            bbox_embed: at least ``num_layers`` box heads (logit-space deltas ``[..., 4]``); index i refines
                layer i.

        Returns:
            hs ``[Ld, B, Q, C]`` and the references after each layer ``[Ld, B, Q, 4]``.
        """
        if reference_points.shape[-1] != 4:
            raise ValueError(f"reference_points must be [B, Q, 4] boxes, got {tuple(reference_points.shape)}")
        # the boxes live in the valid-area frame; the sampler works in the padded frame of each level
        ratio = torch.cat([valid_ratios, valid_ratios], -1)[:, None]
        output = tgt
        intermediate = []
        intermediate_references = []
        for lid, layer in enumerate(self.layers):
            reference_points_input = reference_points[:, :, None] * ratio
            output = layer(output, query_pos, reference_points_input, memory, spatial_shapes, memory_padding_mask)
            new_reference_points = reference_points
            if bbox_embed is not None:
                new_reference_points = (bbox_embed[lid](output) + inverse_sigmoid(reference_points)).sigmoid()
                reference_points = new_reference_points.detach()
            intermediate.append(output)
            intermediate_references.append(new_reference_points if self.look_forward_twice else reference_points)
        return torch.stack(intermediate), torch.stack(intermediate_references)
