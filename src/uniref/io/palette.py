"""The standard DAVIS / PASCAL-VOC colour map, generated in code.

DAVIS annotations are palette ("P" mode) PNGs whose palette is the classic VOC bit-interleaving map:
the three low bits of the index give the top bit of R, G and B, the next three bits the next bit, and so
on. Index 0 is black, 1 = (128, 0, 0), 2 = (0, 128, 0), 3 = (128, 128, 0), 4 = (0, 0, 128), ...
The official code copies the palette out of a dataset PNG at a hard-coded path; generating it means
writing DAVIS-layout PNGs needs no dataset on disk.
"""

from __future__ import annotations

import numpy as np

__all__ = ["davis_palette", "davis_palette_flat", "label_colors"]


def davis_palette(num_colors: int = 256) -> np.ndarray:
    """The DAVIS colour map.

    Args:
        num_colors: how many entries to return (at most 256).

    Returns:
        ``[num_colors, 3]`` uint8 RGB colours; row ``i`` is the colour of object id ``i``.
    """
    if not 0 < num_colors <= 256:
        raise ValueError(f"num_colors must be in 1..256, got {num_colors}")
    ids = np.arange(256, dtype=np.int64)
    colors = np.zeros((256, 3), dtype=np.int64)
    for bit in range(8):
        # bit `bit` of the id's channel c lands at bit position 7 - (index of the id's bit triple)
        triple = ids >> (3 * bit)
        for channel in range(3):
            colors[:, channel] |= ((triple >> channel) & 1) << (7 - bit)
    return colors[:num_colors].astype(np.uint8)


def davis_palette_flat() -> list[int]:
    """The 768 palette values in the flat ``[r0, g0, b0, r1, ...]`` form ``PIL.Image.putpalette`` takes."""
    return davis_palette().reshape(-1).tolist()


def label_colors(ids: np.ndarray) -> np.ndarray:
    """The palette colour of each id.

    Args:
        ids: integer array of any shape with values in 0..255.

    Returns:
        uint8 array of shape ``ids.shape + (3,)``.
    """
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise ValueError(f"palette ids must be in 0..255, got values in {int(ids.min())}..{int(ids.max())}")
    return davis_palette()[ids.astype(np.int64)]
