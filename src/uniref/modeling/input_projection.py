"""Projection of the backbone features to the transformer width, plus their padding masks and position codes.

Levels 0..2 are 1x1 conv + GroupNorm(32) of ``res3..res5`` (strides 8/16/32); level 3 (stride 64) is a
3x3 stride-2 conv + GroupNorm of the *raw* ``res5``. Further extra levels, if any, take the previous
projected level. Module names are the official ``input_proj.{i}.0`` (conv) and ``input_proj.{i}.1`` (GN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def build_input_proj(in_channels: Sequence[int], d_model: int = 256, num_feature_levels: int = 4,
                     num_groups: int = 32) -> nn.ModuleList:
    """One ``Sequential(conv, GroupNorm)`` per level.

    Args:
        in_channels: channels of the backbone features used (``res3``, ``res4``, ``res5``).
        d_model: output width.
        num_feature_levels: total levels; those beyond ``len(in_channels)`` are stride-2 3x3 convs.
        num_groups: GroupNorm groups.
    """
    if num_feature_levels < len(in_channels):
        raise ValueError("num_feature_levels must be at least the number of backbone features")
    layers: list[nn.Module] = [
        nn.Sequential(nn.Conv2d(c, d_model, kernel_size=1), nn.GroupNorm(num_groups, d_model)) for c in in_channels
    ]
    prev = in_channels[-1]
    for _ in range(num_feature_levels - len(in_channels)):
        layers.append(nn.Sequential(nn.Conv2d(prev, d_model, kernel_size=3, stride=2, padding=1),
                                    nn.GroupNorm(num_groups, d_model)))
        prev = d_model
    for proj in layers:
        nn.init.xavier_uniform_(proj[0].weight, gain=1)
        nn.init.zeros_(proj[0].bias)
    return nn.ModuleList(layers)


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest resize of a padding mask ``[B, H, W]`` bool -> ``[B, h, w]`` bool."""
    return F.interpolate(mask[None].float(), size=size).to(bool)[0]


def project_features(
    input_proj: nn.ModuleList,
    feats: dict[str, Tensor],
    image_mask: Tensor,
    position_embedding: Callable[[Tensor], Tensor],
    in_features: Sequence[str] = ("res3", "res4", "res5"),
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Project backbone features to the transformer levels.

    Args:
        input_proj: from :func:`build_input_proj`.
        feats: backbone outputs, ``{name: [B, C_name, h, w]}``.
        image_mask: ``[B, Hp, Wp]`` bool, True at padding of the padded input.
        position_embedding: maps a mask ``[B, h, w]`` to ``[B, D, h, w]`` (e.g. ``PositionEmbeddingSine``).
        in_features: backbone features feeding levels ``0..len(in_features)-1``.

    Returns:
        ``(srcs, masks, pos)``, one entry per level: ``[B, D, h_l, w_l]``, ``[B, h_l, w_l]`` bool (True =
        padding: the image mask nearest-resized to the level for the backbone levels, the level-0 mask
        nearest-resized for the extra levels), ``[B, D, h_l, w_l]`` in the source dtype.
    """
    srcs: list[Tensor] = []
    masks: list[Tensor] = []
    pos: list[Tensor] = []

    def add(src: Tensor, mask: Tensor) -> None:
        srcs.append(src)
        masks.append(mask)
        pos.append(position_embedding(mask).to(src.dtype))

    for level, name in enumerate(in_features):
        src = input_proj[level](feats[name])
        add(src, resize_mask(image_mask, tuple(src.shape[-2:])))
    for level in range(len(in_features), len(input_proj)):
        source = feats[in_features[-1]] if level == len(in_features) else srcs[-1]
        src = input_proj[level](source)
        # official: the extra levels resize the level-0 mask, not the image mask (they differ only when
        # an image carries 32+ rows/columns of padding, i.e. in batches of unequal sizes)
        add(src, resize_mask(masks[0], tuple(src.shape[-2:])))
    return srcs, masks, pos
