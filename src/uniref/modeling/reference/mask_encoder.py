"""The mask reference encoder: turns a reference image plus an object mask into per-level attention values.

A ResNet-18 over ``[image, mask]`` (4 channels) gives strides 8/16/32 (``layer2..4``) and an extra
stride-64 level (``final_layer``). Each is fused with the reference image's own projected feature of the
same stride (``srcs_ref``), giving the values of the mask reference dictionary. Official: ``ValueEncoderSO``
(and ``ValueEncoderSO_Sam`` for the single-level SAM variant).

Naming: ``B`` references (objects or shots), ``C`` model width (d_model; 256 in the official configs).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from uniref.modeling.reference.blocks import FeatureFusionBlock, ResNet18Trunk


class MaskReferenceEncoder(ResNet18Trunk):
    """ResNet-18 trunk + ``final_layer`` + ``fuser2..fuser5`` (official ``ValueEncoderSO``).

    Args:
        ref_channels: channels of the reference image's projected features ``srcs_ref`` (d_model, 256).
        out_channels: channels of the values (d_model, 256; a multiple of 32 for the GroupNorm).
        trunk_widths: channels of the trunk's four stages (official ResNet-18: 64, 128, 256, 512).
    """

    def __init__(self, ref_channels: int = 256, out_channels: int = 256,
                 trunk_widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__(num_stages=4, widths=trunk_widths)
        if out_channels % 32:
            raise ValueError(f"out_channels must be a multiple of 32 (GroupNorm of 32 groups), got {out_channels}")
        # The extra stride-64 level, like the visual side's extra input projection.
        self.final_layer = nn.Sequential(
            nn.Conv2d(self.stage_channels[3], out_channels, 3, stride=2, padding=1), nn.GroupNorm(32, out_channels)
        )
        # layer2, layer3, layer4, final_layer
        mask_channels = (*self.stage_channels[1:], out_channels)
        for i, ch in enumerate(mask_channels):
            self.add_module(f"fuser{i + 2}", FeatureFusionBlock(ch + ref_channels, out_channels))
        self.num_levels = len(mask_channels)

    def encode_levels(self, image: Tensor, mask: Tensor) -> list[Tensor]:
        """Mask-encoder features before fusion: ``layer2``, ``layer3``, ``layer4``, ``final_layer`` outputs."""
        feats = self.forward_trunk(image, mask)
        return feats[1:] + [self.final_layer(feats[-1])]

    def forward(self, image: Tensor, mask: Tensor, srcs_ref: list[Tensor]) -> list[Tensor]:
        """Encode one reference per batch entry.

        Args:
            image: ``[B, 3, H, W]`` normalised reference image, zero-padded to a multiple of 32.
            mask: ``[B, 1, H, W]`` object mask, 0/1, zero on padding.
            srcs_ref: 4 levels ``[B, ref_channels, h_l, w_l]`` of the reference image's projected features
                (strides 8, 16, 32, 64).

        Returns:
            4 levels ``[B, out_channels, h_l, w_l]``: the attention values of the mask reference.
        """
        if len(srcs_ref) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} reference feature levels, got {len(srcs_ref)}")
        feats = self.encode_levels(image, mask)
        return [getattr(self, f"fuser{i + 2}")(f, s) for i, (f, s) in enumerate(zip(feats, srcs_ref))]


class SamMaskReferenceEncoder(ResNet18Trunk):
    """Single-level variant for UniRef-SAM (official ``ValueEncoderSO_Sam``): ResNet-18 up to ``layer3``
    (stride 16) and one ``fuser`` with the reference frame's SAM image embedding.

    Args:
        ref_channels: channels of the SAM image embedding (256).
        out_channels: channels of the values (256).
        trunk_widths: channels of the trunk stages (official: 64, 128, 256, 512; the fourth is unused).
    """

    def __init__(self, ref_channels: int = 256, out_channels: int = 256,
                 trunk_widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__(num_stages=3, widths=trunk_widths)
        self.fuser = FeatureFusionBlock(self.stage_channels[2] + ref_channels, out_channels)

    def forward(self, image: Tensor, mask: Tensor, embedding: Tensor) -> Tensor:
        """``image`` ``[B, 3, H, W]``, ``mask`` ``[B, 1, H, W]``, ``embedding`` ``[B, ref_channels, H/16, W/16]``
        -> values ``[B, out_channels, H/16, W/16]``."""
        return self.fuser(self.forward_trunk(image, mask)[-1], embedding)
