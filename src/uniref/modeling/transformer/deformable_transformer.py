"""The two-stage Deformable-DETR transformer of UniRef++ (mixed selection, look-forward-twice, box refinement).

State-dict names equal the official ``detr.detr.transformer.*`` ones, minus the official aliases
``decoder.class_embed`` / ``decoder.bbox_embed``: the detection heads are owned by the caller and passed to
:meth:`DeformableTransformer.forward`.

Naming: ``B`` batch, ``C`` channels, ``Lv`` feature levels, ``S`` flattened positions of all levels,
``Q`` queries, ``Ld`` decoder layers, ``K`` classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from uniref.layers.ms_deform_attn import MSDeformAttn
from uniref.modeling.transformer.decoder import DeformableDecoder, DeformableDecoderLayer
from uniref.modeling.transformer.encoder import DeformableEncoder, DeformableEncoderLayer
from uniref.modeling.transformer.two_stage import encoder_output_proposals, proposal_pos_embed


@dataclass
class TransformerOutput:
    """What the transformer returns.

    Attributes:
        hs: ``[Ld, B, Q, C]`` decoder output of every layer.
        init_reference: ``[B, Q, 4]`` sigmoid boxes of the selected proposals (detached), the input of layer 0.
        inter_references: ``[Ld, B, Q, 4]`` the refined boxes after each layer (not detached under
            look-forward-twice).
        enc_outputs_class: ``[B, S, K]`` class logits of every encoder proposal.
        enc_outputs_coord_unact: ``[B, S, 4]`` proposal boxes in logit space; ``+inf`` at padded or invalid
            positions, as in the official code.
        memory: ``[B, S, C]`` encoder output.
        spatial_shapes: ``[Lv, 2]`` long (h, w) per level.
        level_start_index: ``[Lv]`` long, offset of each level in ``S``.
        valid_ratios: ``[B, Lv, 2]`` (w, h) unpadded fraction per level.
        memory_padding_mask: ``[B, S]`` bool, True = pad.
    """

    hs: Tensor
    init_reference: Tensor
    inter_references: Tensor
    enc_outputs_class: Tensor
    enc_outputs_coord_unact: Tensor
    memory: Tensor
    spatial_shapes: Tensor
    level_start_index: Tensor
    valid_ratios: Tensor
    memory_padding_mask: Tensor


def valid_ratios_of(mask: Tensor) -> Tensor:
    """``[B, h, w]`` bool (True = pad, padding at the bottom/right) -> ``[B, 2]`` (w, h) unpadded fraction."""
    _, h, w = mask.shape
    valid_h = torch.sum(~mask[:, :, 0], 1)
    valid_w = torch.sum(~mask[:, 0, :], 1)
    return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)


class DeformableTransformer(nn.Module):
    """Deformable-DETR encoder + two-stage proposal selection + decoder.

    Args:
        d_model: channel width C, a multiple of 4 (official 256); the proposal embedding is 4 coordinates x
            ``C / 2`` sine features, i.e. ``2 C`` wide (128 per coordinate for the official 256).
        nhead: attention heads.
        num_encoder_layers, num_decoder_layers: depths.
        dim_feedforward: FFN width.
        dropout: dropout in attention and FFN (the UniRef++ configs use 0.0).
        num_feature_levels: Lv.
        dec_n_points, enc_n_points: deformable sampling points per head and level.
        two_stage_num_proposals: Q, the number of proposals turned into queries.
        mixed_selection: content queries are learned (``query_embed`` in :meth:`forward`), positions come from
            the proposals; otherwise both come from the proposals.
        look_forward_twice: keep the refined boxes attached to the graph in ``inter_references``.
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        num_feature_levels: int = 4,
        dec_n_points: int = 4,
        enc_n_points: int = 4,
        two_stage_num_proposals: int = 300,
        mixed_selection: bool = True,
        look_forward_twice: bool = True,
    ):
        super().__init__()
        if d_model % 4:
            # C / 2 sine features per box coordinate, themselves interleaved sin/cos pairs
            raise ValueError(f"the two-stage transformer needs d_model divisible by 4, got {d_model}")
        self.d_model = d_model
        self.nhead = nhead
        self.num_feature_levels = num_feature_levels
        self.two_stage_num_proposals = two_stage_num_proposals
        self.mixed_selection = mixed_selection

        encoder_layer = DeformableEncoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points
        )
        self.encoder = DeformableEncoder(encoder_layer, num_encoder_layers)
        decoder_layer = DeformableDecoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points
        )
        self.decoder = DeformableDecoder(decoder_layer, num_decoder_layers, look_forward_twice)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.enc_output = nn.Linear(d_model, d_model)
        self.enc_output_norm = nn.LayerNorm(d_model)
        self.pos_trans = nn.Linear(d_model * 2, d_model * 2)
        self.pos_trans_norm = nn.LayerNorm(d_model * 2)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Official init: xavier on every matrix, then the deformable-attention init, normal level embedding."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    @property
    def num_decoder_layers(self) -> int:
        return self.decoder.num_layers

    def forward(
        self,
        srcs: Sequence[Tensor],
        masks: Sequence[Tensor],
        pos_embeds: Sequence[Tensor],
        query_embed: Tensor,
        class_embed: Sequence[nn.Module],
        bbox_embed: Sequence[nn.Module],
    ) -> TransformerOutput:
        """Encode the levels, pick the top-Q proposals, decode with box refinement.

        Args:
            srcs: per level ``[B, C, h, w]`` features.
            masks: per level ``[B, h, w]`` bool, True = pad.
            pos_embeds: per level ``[B, C, h, w]`` sine position embeddings.
            query_embed: ``[Q, C]`` content queries (mixed selection); ignored without mixed selection.
            class_embed: ``Ld + 1`` class heads ``C -> K``; the last scores the encoder proposals.
            bbox_embed: ``Ld + 1`` box heads ``C -> 4`` (logit-space deltas); the last refines the proposals.

        Returns:
            :class:`TransformerOutput`.
        """
        num_dec = self.decoder.num_layers
        if len(class_embed) != num_dec + 1 or len(bbox_embed) != num_dec + 1:
            raise ValueError(
                f"need {num_dec + 1} class and box heads (one per decoder layer + the encoder), got "
                f"{len(class_embed)} and {len(bbox_embed)}"
            )
        if not len(srcs) == len(masks) == len(pos_embeds) == self.num_feature_levels:
            raise ValueError(
                f"expected {self.num_feature_levels} levels of srcs, masks and pos_embeds, got "
                f"{len(srcs)}, {len(masks)} and {len(pos_embeds)}"
            )
        src_flatten, mask_flatten, pos_flatten, shapes = [], [], [], []
        for level, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds)):
            _, _, h, w = src.shape
            shapes.append((h, w))
            src_flatten.append(src.flatten(2).transpose(1, 2))
            mask_flatten.append(mask.flatten(1))
            pos_flatten.append(pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1))
        src_flatten = torch.cat(src_flatten, 1)
        mask_flatten = torch.cat(mask_flatten, 1)
        pos_flatten = torch.cat(pos_flatten, 1)
        device = src_flatten.device
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([valid_ratios_of(m) for m in masks], 1)

        memory = self.encoder(src_flatten, shapes, valid_ratios, pos_flatten, mask_flatten)

        output_memory, output_proposals = encoder_output_proposals(memory, mask_flatten, shapes)
        output_memory = self.enc_output_norm(self.enc_output(output_memory))
        enc_outputs_class = class_embed[num_dec](output_memory)
        enc_outputs_coord_unact = bbox_embed[num_dec](output_memory) + output_proposals

        # two-stage selection: the Q best proposals by their first-class score, boxes cut from the graph
        topk = torch.topk(enc_outputs_class[..., 0], self.two_stage_num_proposals, dim=1)[1]
        topk_coords_unact = torch.gather(enc_outputs_coord_unact, 1, topk.unsqueeze(-1).expand(-1, -1, 4)).detach()
        reference_points = topk_coords_unact.sigmoid()
        # boxes stay in float32 (or wider); their embedding follows the features' dtype
        proposal_pos = proposal_pos_embed(topk_coords_unact, self.d_model // 2).to(memory.dtype)  # [B, Q, 2C]
        pos_trans_out = self.pos_trans_norm(self.pos_trans(proposal_pos))
        query_pos, tgt = torch.split(pos_trans_out, self.d_model, dim=2)
        if self.mixed_selection:
            # learned content queries; only the positional half of the proposal embedding is used
            tgt = query_embed.unsqueeze(0).expand(memory.shape[0], -1, -1)

        hs, inter_references = self.decoder(
            tgt, reference_points, memory, shapes, valid_ratios, query_pos, mask_flatten, bbox_embed
        )
        return TransformerOutput(
            hs=hs,
            init_reference=reference_points,
            inter_references=inter_references,
            enc_outputs_class=enc_outputs_class,
            enc_outputs_coord_unact=enc_outputs_coord_unact,
            memory=memory,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            memory_padding_mask=mask_flatten,
        )
