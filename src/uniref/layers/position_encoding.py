"""Sine position encoding of a 2-d feature map, computed from its padding mask (DETR / Deformable DETR)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Fixed sin/cos embedding of the (normalised) row and column of every valid pixel.

    Coordinates are 1-based cumulative counts of non-padded pixels, so padding does not shift the
    valid area's code. With ``normalize`` each axis is mapped to ``(c - 0.5) / (last + 1e-6) * scale``.

    Args:
        num_pos_feats: channels per axis; the output has ``2 * num_pos_feats`` channels ([y, x]).
        temperature: base of the geometric frequency progression.
        normalize: map coordinates to ``[0, scale]`` before the frequencies.
        scale: range after normalisation (2π by default).
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, mask: Tensor) -> Tensor:
        """Embed a padding mask.

        Args:
            mask: ``[B, H, W]`` bool, True at padding.

        Returns:
            ``[B, 2 * num_pos_feats, H, W]`` float32: channels ``[pos_y, pos_x]``, each interleaved sin/cos.
        """
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)

        pos_x = x_embed[:, :, :, None] / dim_t  # [B, H, W, F]
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (
            f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale}"
        )
