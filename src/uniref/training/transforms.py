"""Training augmentations (spec 10.4): flips, the DETR "absolute range" crop and multi-scale shortest-edge resize.

Every random choice is drawn from an explicit ``numpy.random.Generator`` into a :class:`FramePlan` first and
applied afterwards, so that a clip can share some choices (the resize size, the flip) and draw others per
frame (the crop), as the official video mappers do.

Arrays: images ``[H, W, 3]`` uint8 RGB, masks ``[n, H, W]`` bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "AugmentConfig",
    "FramePlan",
    "apply_plan",
    "plan_clip",
    "shortest_edge_size",
    "IMAGE_SHORT_SIZES",
    "FSS_SHORT_SIZES",
    "VIDEO_SHORT_SIZES",
    "VIDEO_REFCOCO_SHORT_SIZES",
]

# The official choices (spec 10.4 and 16).
IMAGE_SHORT_SIZES: tuple[int, ...] = tuple(range(480, 801, 32))  # 480, 512, ..., 800
FSS_SHORT_SIZES: tuple[int, ...] = (320, 352, 392, 416, 448, 480, 512, 544, 576, 608, 640)
VIDEO_SHORT_SIZES: tuple[int, ...] = tuple(range(320, 641, 32))  # 320-640
VIDEO_REFCOCO_SHORT_SIZES: tuple[int, ...] = tuple(range(480, 801, 32))  # 480-800


@dataclass
class AugmentConfig:
    """The augmentation of one dataset.

    Attributes:
        short_sizes: the final shortest-edge sizes, one drawn per sample (per clip for videos).
        max_size: cap of the longest edge after the final resize.
        flip_prob: probability of a horizontal flip (one draw per clip).
        crop_prob: probability of the random crop (drawn per frame when ``crop_per_frame``).
        crop_pre_sizes: the DETR crop first resizes the shortest edge to one of these (image stages);
            empty: crop the frame as it is (video stage).
        crop_pre_max_size: longest-edge cap of that first resize.
        crop_range: (min, max) side of the "absolute_range" crop, height and width drawn independently.
        crop_per_frame: every frame of a clip draws its own crop (pseudo motion for static images).
    """

    short_sizes: tuple[int, ...] = IMAGE_SHORT_SIZES
    max_size: int = 1333
    flip_prob: float = 0.5
    crop_prob: float = 0.5
    crop_pre_sizes: tuple[int, ...] = (400, 500, 600)
    crop_pre_max_size: int = 1333
    crop_range: tuple[int, int] = (384, 600)
    crop_per_frame: bool = True

    def __post_init__(self) -> None:
        self.short_sizes = tuple(int(s) for s in self.short_sizes)
        self.crop_pre_sizes = tuple(int(s) for s in self.crop_pre_sizes)
        self.crop_range = (int(self.crop_range[0]), int(self.crop_range[1]))
        if not self.short_sizes or min(self.short_sizes) < 1 or self.max_size < 1:
            raise ValueError(f"augment needs positive short_sizes and max_size, got {self.short_sizes}, {self.max_size}")
        if not 0.0 <= self.flip_prob <= 1.0 or not 0.0 <= self.crop_prob <= 1.0:
            raise ValueError("flip_prob and crop_prob must lie in [0, 1]")
        if not 1 <= self.crop_range[0] <= self.crop_range[1]:
            raise ValueError(f"crop_range must be (min, max) with 1 <= min <= max, got {self.crop_range}")


@dataclass
class FramePlan:
    """The random choices for one frame, in the order they are applied.

    Attributes:
        flip: mirror horizontally.
        crop_pre_size: shortest-edge size of the resize before the crop (None: no pre-resize).
        crop: ``(y0, x0, h, w)`` relative to the (pre-resized) frame, or None.
        short_size: the final shortest-edge size.
    """

    flip: bool
    crop_pre_size: int | None
    crop: tuple[int, int, int, int] | None
    short_size: int


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge``: scale so the short side is ``short``, then cap the long side.

    Returns the new ``(h, w)``, rounded half up.
    """
    scale = short / min(h, w)
    newh, neww = (short, scale * w) if h < w else (scale * h, short)
    if max(newh, neww) > max_size:
        rescale = max_size / max(newh, neww)
        newh, neww = newh * rescale, neww * rescale
    return int(newh + 0.5), int(neww + 0.5)


def _draw_crop(rng: np.random.Generator, h: int, w: int, crop_range: tuple[int, int]) -> tuple[int, int, int, int]:
    """detectron2 ``RandomCrop("absolute_range")`` followed by a uniform position."""
    lo, hi = crop_range
    ch = int(rng.integers(min(h, lo), min(h, hi) + 1))
    cw = int(rng.integers(min(w, lo), min(w, hi) + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    return y0, x0, ch, cw


def plan_clip(
    cfg: AugmentConfig, rng: np.random.Generator, sizes: Sequence[tuple[int, int]], *, allow_crop: bool = True
) -> list[FramePlan]:
    """Draw the augmentation of a clip of frames with the given ``(h, w)`` sizes (one frame for images).

    The flip and the final size are drawn once per clip; the crop per frame (``crop_per_frame``) or once.
    ``allow_crop=False`` disables the crop (RIS expressions with an ordinal word).
    """
    flip = bool(rng.random() < cfg.flip_prob)
    short = int(cfg.short_sizes[int(rng.integers(len(cfg.short_sizes)))])
    plans: list[FramePlan] = []
    shared: tuple[int | None, tuple[int, int, int, int] | None] | None = None
    for h, w in sizes:
        if shared is not None and not cfg.crop_per_frame:
            pre, crop = shared
        else:
            pre, crop = None, None
            if allow_crop and cfg.crop_prob > 0 and rng.random() < cfg.crop_prob:
                if cfg.crop_pre_sizes:
                    pre = int(cfg.crop_pre_sizes[int(rng.integers(len(cfg.crop_pre_sizes)))])
                    h, w = shortest_edge_size(h, w, pre, cfg.crop_pre_max_size)
                crop = _draw_crop(rng, h, w, cfg.crop_range)
            shared = (pre, crop)
        plans.append(FramePlan(flip, pre, crop, short))
    return plans


def _resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def _resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if masks.shape[1:] == size:
        return masks
    out = np.zeros((masks.shape[0], *size), dtype=bool)
    for i, m in enumerate(masks):
        out[i] = np.asarray(Image.fromarray(m.astype(np.uint8)).resize((size[1], size[0]), Image.NEAREST)) > 0
    return out


def apply_plan(
    image: np.ndarray, masks: np.ndarray, plan: FramePlan, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one frame's plan to ``image [H, W, 3]`` and ``masks [n, H, W]`` (bilinear / nearest resizes)."""
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks {masks.shape} do not match image {image.shape}")
    if plan.flip:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    if plan.crop_pre_size is not None:
        size = shortest_edge_size(*image.shape[:2], plan.crop_pre_size, cfg.crop_pre_max_size)
        image, masks = _resize_image(np.ascontiguousarray(image), size), _resize_masks(masks, size)
    if plan.crop is not None:
        y0, x0, ch, cw = plan.crop
        image, masks = image[y0:y0 + ch, x0:x0 + cw], masks[:, y0:y0 + ch, x0:x0 + cw]
    size = shortest_edge_size(*image.shape[:2], plan.short_size, cfg.max_size)
    image = _resize_image(np.ascontiguousarray(image), size)
    masks = _resize_masks(np.ascontiguousarray(masks), size)
    return np.ascontiguousarray(image), np.ascontiguousarray(masks)
