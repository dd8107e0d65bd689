"""Pixel decoder of the mask branch: an FPN over the encoder memory, refined at stride 4 with ``res2``.

1. ``mask_head`` (official ``MaskHeadSmallConv``): top-down over the memory of levels 2 -> 1 -> 0
   (strides 32 -> 16 -> 8), ending in ``mask_dim`` channels at stride 8.
2. Stride-4 fusion: ``lateral_conv(res2)`` + bilinear upsample, ``output_conv`` (3x3) + ReLU, ``mask_conv``
   (1x1) -> the dynamic-head input features.

Naming: ``B`` batch, ``S`` flattened memory tokens, ``D`` model width, ``Hp x Wp`` padded input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


class MaskHeadSmallConv(nn.Module):
    """Top-down FPN over three memory levels; ``jia_dcn`` is a plain 3x3 conv in UniRef++.

    Args:
        dim: memory width ``D``.
        mask_dim: output channels (``D // 32`` = 8 in the official model).
    """

    def __init__(self, dim: int = 256, mask_dim: int = 8):
        super().__init__()
        self.lay1 = nn.Conv2d(dim, dim // 4, 3, padding=1)
        self.lay2 = nn.Conv2d(dim // 4, mask_dim, 3, padding=1)
        self.lay3 = nn.Conv2d(dim, dim, 3, padding=1)
        self.lay4 = nn.Conv2d(dim, dim, 3, padding=1)
        self.jia_dcn = nn.Conv2d(dim, dim, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """``feats``: ``[B, D, h, w]`` at strides 8, 16, 32 (finest first) -> ``[B, mask_dim, h8, w8]``."""
        f8, f16, f32 = feats[-3], feats[-2], feats[-1]
        x = F.relu(self.lay3(f32))
        x = F.relu(self.lay4(f16 + F.interpolate(x, size=f16.shape[-2:], mode="nearest")))
        x = F.relu(self.jia_dcn(f8 + F.interpolate(x, size=f8.shape[-2:], mode="nearest")))
        x = F.relu(self.lay1(x))
        return F.relu(self.lay2(x))


def c2_xavier_fill(module: nn.Conv2d) -> None:
    """Caffe2 "XavierFill" as detectron2 does it: kaiming-uniform with a=1, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def memory_to_maps(memory: Tensor, spatial_shapes: Tensor | Sequence[Sequence[int]],
                   level_start_index: Tensor | Sequence[int], num_levels: int = 3) -> list[Tensor]:
    """Cut the flattened encoder memory ``[B, S, D]`` back into maps ``[B, D, h_l, w_l]`` for the first levels."""
    shapes = spatial_shapes.tolist() if isinstance(spatial_shapes, Tensor) else spatial_shapes
    starts = level_start_index.tolist() if isinstance(level_start_index, Tensor) else level_start_index
    b, _, d = memory.shape
    maps = []
    for lvl in range(num_levels):
        h, w = int(shapes[lvl][0]), int(shapes[lvl][1])
        s = int(starts[lvl])
        # a permuted view (channels-last strides), as the official code hands it to the convs
        maps.append(memory[:, s:s + h * w].reshape(b, h, w, d).permute(0, 3, 1, 2))
    return maps


@dataclass
class PixelDecoderOutput:
    """Mask features plus the intermediates of the stride-4 fusion (for inspection and parity tests).

    Attributes:
        mask_features: ``[B, M, Hp/4, Wp/4]`` input of the dynamic mask head.
        coarse: ``[B, M, Hp/8, Wp/8]`` ``mask_head`` output.
        lateral: ``[B, M, Hp/4, Wp/4]`` ``lateral_conv(res2)``.
        fused: ``[B, M, Hp/4, Wp/4]`` ``relu(output_conv(lateral + up(coarse)))``.
    """

    mask_features: Tensor
    coarse: Tensor
    lateral: Tensor
    fused: Tensor


class PixelDecoder(nn.Module):
    """Mask features at stride 4 from the encoder memory and the backbone's ``res2``.

    Args:
        d_model: memory width ``D``.
        res2_channels: channels of ``res2`` (256 for R50, 192 for Swin-L, 64 for R18).
        mask_dim: channels of the mask features (8).
    """

    def __init__(self, d_model: int = 256, res2_channels: int = 256, mask_dim: int = 8):
        super().__init__()
        self.mask_dim = mask_dim
        # registration order follows the official DDETRsegm (the fusion convs come before mask_head)
        self.lateral_conv = nn.Conv2d(res2_channels, mask_dim, kernel_size=1)
        self.output_conv = nn.Conv2d(mask_dim, mask_dim, kernel_size=3, padding=1)
        self.mask_conv = nn.Conv2d(mask_dim, mask_dim, kernel_size=1)
        self.mask_head = MaskHeadSmallConv(d_model, mask_dim)
        c2_xavier_fill(self.lateral_conv)
        c2_xavier_fill(self.output_conv)

    def forward_intermediates(self, memory: Tensor, spatial_shapes: Tensor | Sequence[Sequence[int]],
                              level_start_index: Tensor | Sequence[int], res2: Tensor) -> PixelDecoderOutput:
        """Same as :meth:`forward`, keeping the intermediate maps."""
        maps = memory_to_maps(memory, spatial_shapes, level_start_index, num_levels=3)
        coarse = self.mask_head(maps)
        lateral = self.lateral_conv(res2)
        y = lateral + F.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        fused = F.relu(self.output_conv(y))
        return PixelDecoderOutput(self.mask_conv(fused), coarse, lateral, fused)

    def forward(self, memory: Tensor, spatial_shapes: Tensor | Sequence[Sequence[int]],
                level_start_index: Tensor | Sequence[int], res2: Tensor) -> Tensor:
        """Compute the dynamic-head input features.

        Args:
            memory: ``[B, S, D]`` encoder output over all levels (only levels 0..2, strides 8-32, are used).
            spatial_shapes: ``[L, 2]`` (h, w) per level.
            level_start_index: ``[L]`` offset of each level in ``S``.
            res2: ``[B, C2, Hp/4, Wp/4]`` backbone stride-4 feature.

        Returns:
            ``[B, mask_dim, Hp/4, Wp/4]``.
        """
        return self.forward_intermediates(memory, spatial_shapes, level_start_index, res2).mask_features
