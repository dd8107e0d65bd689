"""Padding of SAM's square input and of its image-embedding grid.

SAM sees every image resized so its longest side is ``S`` (1024) and zero-padded bottom/right to
``S x S`` (after normalisation, so padding is the mean colour). The ``g x g`` embedding grid
(``g = S / patch``) then has cells that cover only padding; a mask reference should neither attend
to them nor average them into its pooled embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_longest_side(image: Tensor, target: int) -> Tensor:
    """Resize ``[C, H, W]`` or ``[B, C, H, W]`` so that ``max(H, W) == target``, keeping the aspect ratio.

    Bilinear, ``align_corners=False``, float output; the new size is rounded like SAM's
    ``ResizeLongestSide``.
    """
    h, w = image.shape[-2:]
    scale = target / max(h, w)
    size = (int(h * scale + 0.5), int(w * scale + 0.5))
    x = image[None] if image.dim() == 3 else image
    x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    return x[0] if image.dim() == 3 else x


def pad_to_square(images: Tensor, size: int) -> Tensor:
    """Zero-pad ``[B, C, H, W]`` bottom/right to ``[B, C, size, size]``."""
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"image of size {h}x{w} does not fit the {size}x{size} SAM input; resize it first")
    return F.pad(images, (0, size - w, 0, size - h))


def embedding_padding_mask(
    image_sizes: Tensor, grid: int, patch_size: int, *, official_padding_bug: bool = False
) -> Tensor:
    """Which cells of the ``grid x grid`` embedding are padding.

    Args:
        image_sizes: ``[B, 2]`` (H, W) of the unpadded image inside the square input, in pixels.
        grid: side of the embedding grid (64 for a 1024 input).
        patch_size: pixels per grid cell (16).
        official_padding_bug: reproduce the official code, which compares grid indices with *pixel*
            sizes; for any image larger than ``grid`` pixels this marks nothing as padding.
    Returns:
        ``[B, grid, grid]`` bool, True at padding. Without the bug a cell is padding when all its
        pixels are padding, i.e. the valid region is ``ceil(H / patch) x ceil(W / patch)`` cells.
    """
    sizes = image_sizes.to(torch.long)
    if not official_padding_bug:
        sizes = (sizes + patch_size - 1) // patch_size
    idx = torch.arange(grid, device=sizes.device)
    valid_rows = idx[None, :] < sizes[:, 0:1]  # [B, g]
    valid_cols = idx[None, :] < sizes[:, 1:2]
    return ~(valid_rows[:, :, None] & valid_cols[:, None, :])
