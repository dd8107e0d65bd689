"""Two-stage proposal generation: one fixed-size box per encoder position, and their sine embedding.

Naming: ``B`` batch, ``S`` flattened positions of all levels, ``C`` channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def encoder_output_proposals(
    memory: Tensor, memory_padding_mask: Tensor, spatial_shapes: Sequence[tuple[int, int]]
) -> tuple[Tensor, Tensor]:
    """One proposal per position: the cell centre with side ``0.05 * 2**level``, in logit space.

    Args:
        memory: ``[B, S, C]`` encoder output.
        memory_padding_mask: ``[B, S]`` True = pad.
        spatial_shapes: (h, w) per level.

    Returns:
        ``memory`` with padded/invalid positions zeroed ``[B, S, C]`` (before ``enc_output``), and the
        proposals ``[B, S, 4]`` as logits of (cx, cy, w, h) relative to the valid area. Padded positions and
        proposals not strictly inside (0.01, 0.99) are ``+inf``, as in the official code: they all share the
        same zero memory, hence one score, and are never meant to be selected.
    """
    batch = memory.shape[0]
    proposals = []
    start = 0
    for level, (h, w) in enumerate(spatial_shapes):
        mask = memory_padding_mask[:, start:start + h * w].view(batch, h, w)
        valid_h = torch.sum(~mask[:, :, 0], 1)
        valid_w = torch.sum(~mask[:, 0, :], 1)
        grid_y, grid_x = torch.meshgrid(
            torch.linspace(0, h - 1, h, dtype=torch.float32, device=memory.device),
            torch.linspace(0, w - 1, w, dtype=torch.float32, device=memory.device),
            indexing="ij",
        )
        grid = torch.cat([grid_x.unsqueeze(-1), grid_y.unsqueeze(-1)], -1)
        scale = torch.cat([valid_w.unsqueeze(-1), valid_h.unsqueeze(-1)], 1).view(batch, 1, 1, 2)
        grid = (grid.unsqueeze(0).expand(batch, -1, -1, -1) + 0.5) / scale
        wh = torch.ones_like(grid) * 0.05 * (2.0**level)
        proposals.append(torch.cat((grid, wh), -1).view(batch, -1, 4))
        start += h * w
    proposals = torch.cat(proposals, 1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    # plain logit, no clamping: the invalid ones are overwritten with +inf right after
    proposals = torch.log(proposals / (1 - proposals))
    invalid = memory_padding_mask.unsqueeze(-1) | ~valid
    proposals = proposals.masked_fill(invalid, float("inf"))
    output_memory = memory.masked_fill(invalid, 0.0)
    return output_memory, proposals


def proposal_pos_embed(proposals: Tensor, num_pos_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """Sine embedding of logit-space boxes.

    Args:
        proposals: ``[B, Q, 4]`` logits of (cx, cy, w, h).
        num_pos_feats: features per coordinate, ``d_model / 2`` (128 for the official width 256), so that
            the embedding is ``2 * d_model`` wide, the input of ``pos_trans``.

    Returns:
        ``[B, Q, 4 * num_pos_feats]``: per coordinate, ``num_pos_feats`` interleaved sin/cos of
        ``sigmoid(coord) * 2 pi`` over geometric frequencies.
    """
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=proposals.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos = proposals.sigmoid() * (2 * math.pi)
    pos = pos[:, :, :, None] / dim_t  # [B, Q, 4, F]
    pos = torch.stack((pos[:, :, :, 0::2].sin(), pos[:, :, :, 1::2].cos()), dim=4)
    return pos.flatten(2)
