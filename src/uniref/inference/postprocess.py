"""From mask logits to masks at the original resolution, in the official order (spec 9.6):
upsample to the padded input, sigmoid, crop to the unpadded size, resize to the original size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from uniref.layers.box_ops import box_cxcywh_to_xyxy


def probabilities_at_input(logits: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """``[N, h', w']`` mask logits at ``stride`` of the padded input -> ``[N, h, w]`` probabilities, cropped."""
    x = logits[:, None]
    if stride != 1:
        x = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
    h, w = size
    return x[:, 0, :h, :w].sigmoid()


def binary_mask_image_task(
    logits: Tensor, size: tuple[int, int], original_size: tuple[int, int], threshold: float = 0.5
) -> Tensor:
    """RIS / FSS: stride-4 logits ``[N, h/4', w/4']`` -> ``[N, H, W]`` bool at the original size
    (binarised at the input size, then nearest-resized)."""
    binary = probabilities_at_input(logits, size, 4) > threshold
    if tuple(binary.shape[-2:]) == tuple(original_size):
        return binary
    return F.interpolate(binary[:, None].float(), size=original_size, mode="nearest")[:, 0] > 0.5


def soft_mask_video(logits: Tensor, size: tuple[int, int], original_size: tuple[int, int], stride: int) -> Tensor:
    """VOS / RVOS: logits -> ``[N, H, W]`` probabilities at the original size (bilinear resize)."""
    prob = probabilities_at_input(logits, size, stride)
    if tuple(prob.shape[-2:]) == tuple(original_size):
        return prob
    return F.interpolate(prob[:, None], size=original_size, mode="bilinear", align_corners=False)[:, 0]


def boxes_to_original(boxes: Tensor, size: tuple[int, int], original_size: tuple[int, int]) -> Tensor:
    """``[N, 4]`` cxcywh normalised to the unpadded input -> ``[N, 4]`` xyxy pixels of the original image, clipped."""
    h, w = size
    oh, ow = original_size
    xyxy = box_cxcywh_to_xyxy(boxes) * boxes.new_tensor([w, h, w, h])
    xyxy = xyxy * boxes.new_tensor([ow / w, oh / h, ow / w, oh / h])
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, ow)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, oh)
    return xyxy


def merge_soft_masks(probs: Tensor, obj_ids: list[int]) -> Tensor:
    """Soft aggregation: ``[N, H, W]`` probabilities of objects ``obj_ids`` -> ``[H, W]`` uint8 label map.

    Background is ``prod(1 - p)``; each object competes on the channel of its id, so ties go to the lowest
    id, as the official argmax over ``[bg, p_1, ..., p_255]`` does.
    """
    if not obj_ids:
        raise ValueError("merge_soft_masks needs at least one object")
    order = sorted(range(len(obj_ids)), key=lambda i: obj_ids[i])
    probs = probs[order]
    ids = torch.tensor([0] + [obj_ids[i] for i in order], device=probs.device, dtype=torch.uint8)
    bg = torch.prod(1 - probs, dim=0, keepdim=True)
    return ids[torch.cat([bg, probs], 0).argmax(0)]
