"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

The official model calls a compiled CUDA kernel; its numerically equivalent pure-PyTorch formulation samples
each level with ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``) and is what we use on every
device. Parameter names (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``) and the
initialisation follow the official module so checkpoints load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SpatialShapes = Tensor | Sequence[Sequence[int]]


def spatial_shapes_as_list(spatial_shapes: SpatialShapes) -> list[tuple[int, int]]:
    """``[L, 2]`` (H, W) per level, as Python ints (one host sync if a tensor is given)."""
    if isinstance(spatial_shapes, Tensor):
        spatial_shapes = spatial_shapes.tolist()
    return [(int(h), int(w)) for h, w in spatial_shapes]


def ms_deform_attn_core(
    value: Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Bilinearly sample every level at the given locations and sum them with the attention weights.

    Args:
        value: ``[B, S, H, Dh]`` per-head values of all levels flattened (S = sum of h_l * w_l).
        spatial_shapes: ``[L, 2]`` (h_l, w_l) per level, a long tensor or a list of pairs (a list avoids
            a device sync).
        sampling_locations: ``[B, Q, H, L, P, 2]`` (x, y) normalised to each level's full (padded) grid;
            points outside [0, 1] read zeros.
        attention_weights: ``[B, Q, H, L, P]``.

    Returns:
        ``[B, Q, H * Dh]`` in the dtype of ``value``.
    """
    shapes = spatial_shapes_as_list(spatial_shapes)
    out_dtype = value.dtype
    # sample in the wider of the two dtypes: low-precision locations would misplace points on large levels
    dtype = torch.promote_types(value.dtype, sampling_locations.dtype)
    value, sampling_locations = value.to(dtype), sampling_locations.to(dtype)
    batch, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    # grid_sample works on [-1, 1] with align_corners=False: pixel centres at (i + 0.5) / size.
    sampling_grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # [B, h*w, H, Dh] -> [B*H, Dh, h, w]: every head is an independent image
        value_l = value_per_level[level].flatten(2).transpose(1, 2).reshape(batch * heads, head_dim, h, w)
        # [B, Q, H, P, 2] -> [B*H, Q, P, 2]
        grid_l = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [B, Q, H, L, P] -> [B*H, 1, Q, L*P]
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, num_queries, num_levels * num_points)
    # [B*H, Dh, Q, L, P] -> [B*H, Dh, Q, L*P], weighted sum over the L*P samples
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(batch, heads * head_dim, num_queries)
    return output.transpose(1, 2).contiguous().to(out_dtype)


@dataclass
class MSDeformAttnDetails:
    """Everything :meth:`MSDeformAttn.forward_detailed` computes.

    output ``[B, Q, C]``; value ``[B, S, H, C/H]`` (projected, zero at padding); sampling_locations
    ``[B, Q, H, L, P, 2]``; attention_weights ``[B, Q, H, L, P]`` (after the softmax).
    """

    output: Tensor
    value: Tensor
    sampling_locations: Tensor
    attention_weights: Tensor


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention.

    Args:
        d_model: channel width C.
        n_levels: number of feature levels L.
        n_heads: number of heads H (C must be divisible by H).
        n_points: sampling points P per head and level.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Official init: offsets start on a ring of 8 directions, scaled by point index; uniform weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        # normalise so the larger of |cos|, |sin| is 1: directions land on the unit square
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        input_spatial_shapes: SpatialShapes,
        input_level_start_index: Tensor | None = None,
        input_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from each query to P points per head and level around its reference.

        Args:
            query: ``[B, Q, C]``.
            reference_points: ``[B, Q, L, 2]`` normalised (x, y) points, or ``[B, Q, L, 4]`` (cx, cy, w, h)
                boxes whose size scales the offsets.
            input_flatten: ``[B, S, C]`` all levels flattened, level by level.
            input_spatial_shapes: ``[L, 2]`` (h, w) per level; a Python list avoids a device sync.
            input_level_start_index: ``[L]``; only the CUDA kernel needs it, accepted for API parity.
            input_padding_mask: ``[B, S]`` bool, True at padded positions (their values are zeroed).

        Returns:
            ``[B, Q, C]``.
        """
        return self.forward_detailed(
            query, reference_points, input_flatten, input_spatial_shapes, input_level_start_index, input_padding_mask
        ).output

    def forward_detailed(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        input_spatial_shapes: SpatialShapes,
        input_level_start_index: Tensor | None = None,
        input_padding_mask: Tensor | None = None,
    ) -> MSDeformAttnDetails:
        """:meth:`forward` that also returns the projected values, sampling locations and weights."""
        del input_level_start_index  # the grid_sample formulation splits by shapes instead
        shapes = spatial_shapes_as_list(input_spatial_shapes)
        batch, num_queries, _ = query.shape
        _, num_in, _ = input_flatten.shape
        if sum(h * w for h, w in shapes) != num_in:
            raise ValueError(f"spatial shapes {shapes} do not cover the {num_in} input positions")
        heads, levels, points = self.n_heads, self.n_levels, self.n_points

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(batch, num_in, heads, self.d_model // heads)

        offsets = self.sampling_offsets(query).view(batch, num_queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, num_queries, heads, levels * points)
        weights = F.softmax(weights, -1).view(batch, num_queries, heads, levels, points)

        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: normalise by (w, h)
            normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            # offsets are in units of half the box size per point index
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(f"reference_points must end in 2 or 4, got shape {tuple(reference_points.shape)}")

        output = ms_deform_attn_core(value, shapes, locations, weights)
        return MSDeformAttnDetails(self.output_proj(output), value, locations, weights)
