"""Element-wise and per-instance loss functions of the criterion (spec section 10.3).

Every function here returns unreduced values (per element or per instance); the criterion does the
summing and the normalisation. Callers pass float32 tensors: the criterion disables autocast around them.

Naming: ``m`` = number of matched instances, ``p`` = number of pixels of one mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "sigmoid_focal_loss",
    "dice_loss",
    "giou_loss",
    "soft_aggregate",
    "bootstrapped_cross_entropy",
    "soft_iou",
]


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal loss of ``logits`` against 0/1 ``targets`` (same shape), unreduced.

    ``alpha < 0`` disables the class balancing term.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """``[m, p]`` mask logits and 0/1 targets -> ``[m]``: 1 - (2 sum(pt) + 1) / (sum(p) + sum(t) + 1)."""
    prob = logits.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def giou_loss(boxes: Tensor, target_boxes: Tensor, eps: float = 1e-7) -> Tensor:
    """``[m, 4]`` xyxy box pairs -> ``[m]``: 1 - GIoU, with fvcore's ``eps`` in both divisions."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    x1g, y1g, x2g, y2g = target_boxes.unbind(-1)
    inter_w = (torch.min(x2, x2g) - torch.max(x1, x1g)).clamp(min=0)
    inter_h = (torch.min(y2, y2g) - torch.max(y1, y1g)).clamp(min=0)
    intersection = inter_w * inter_h
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intersection
    iou = intersection / (union + eps)
    enclosing = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    return 1 - (iou - (enclosing - union) / (enclosing + eps))


def soft_aggregate(prob: Tensor, eps: float = 1e-7) -> Tensor:
    """Soft aggregation of object probabilities into background + objects, as logits.

    Args:
        prob: ``[o, ...]`` foreground probability of each of ``o`` objects.

    Returns:
        ``[o + 1, ...]`` logits whose softmax over dim 0 is [background, object_1, ...]. Background is
        prod(1 - p); probabilities are clamped to [eps, 1 - eps] before the logit so it stays finite.
    """
    background = torch.prod(1 - prob, dim=0, keepdim=True)
    merged = torch.cat([background, prob], dim=0).clamp(eps, 1 - eps)
    return torch.log(merged / (1 - merged))


def _single_object_logits(mask_logits: Tensor) -> Tensor:
    """``[m, p]`` mask logits -> ``[m, 2, p]`` aggregated [background, foreground] logits per instance.

    Every instance is its own one-object aggregation, so the two classes are softmax([-x, x]) up to the
    clamp.
    """
    return soft_aggregate(mask_logits.sigmoid().unsqueeze(0)).permute(1, 0, 2)


def bootstrapped_cross_entropy(mask_logits: Tensor, targets: Tensor, top_fraction: float = 0.4) -> Tensor:
    """Bootstrapped cross-entropy on the soft-aggregated [background, foreground] probabilities.

    Args:
        mask_logits: ``[m, p]`` mask logits.
        targets: ``[m, p]`` 0/1 targets.
        top_fraction: the share of hardest pixels kept per instance (``int(p * top_fraction)``).

    Returns:
        ``[m, k]`` the kept per-pixel losses; the criterion averages them all.
    """
    logits = _single_object_logits(mask_logits)
    per_pixel = F.cross_entropy(logits, targets.long(), reduction="none")  # [m, p]
    k = int(per_pixel.shape[-1] * top_fraction)
    kept, _ = torch.topk(per_pixel, k, dim=-1, sorted=False)
    return kept


def soft_iou(mask_logits: Tensor, targets: Tensor, eps: float = 1e-7) -> Tensor:
    """``[m, p]`` mask logits and 0/1 targets -> ``[m]`` soft IoU of the aggregated foreground probability.

    IoU = (sum min(q, t) + eps) / (sum max(q, t) + eps), with q the softmax foreground probability.
    """
    fg = _single_object_logits(mask_logits).softmax(dim=1)[:, 1]
    inter = torch.min(fg, targets).sum(-1)
    union = torch.max(fg, targets).sum(-1)
    return (inter + eps) / (union + eps)
