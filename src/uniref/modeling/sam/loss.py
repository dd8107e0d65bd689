"""The UniRef-SAM training loss (spec section 12, following LISA): 2 x BCE + 0.5 x dice.

One predicted mask per sample (single-mask output), so there is no matching: every prediction is
compared with its own target. Both terms are per-mask averages, then averaged over the masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class SamLossWeights:
    bce: float = 2.0
    dice: float = 0.5
    dice_scale: float = 1000.0
    dice_eps: float = 1e-6


def sigmoid_bce_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-pixel mean BCE of each mask, averaged over masks.

    Args:
        logits: ``[N, H, W]`` (or any ``[N, ...]``) mask logits.
        targets: same shape, 0/1 float.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.flatten(1).mean(1).mean()


def scaled_dice_loss(logits: Tensor, targets: Tensor, *, scale: float = 1000.0, eps: float = 1e-6) -> Tensor:
    """``1 - (2 sum(p t) / s + eps) / ((sum(p) + sum(t)) / s + eps)`` per mask, averaged over masks.

    Dividing the sums by ``scale`` before adding ``eps`` makes the smoothing term matter only for
    (nearly) empty masks, which is LISA's formulation; ``p = sigmoid(logits)``.
    """
    p = logits.sigmoid().flatten(1)
    t = targets.flatten(1)
    numerator = 2 * (p / scale * t).sum(-1)
    denominator = (p / scale).sum(-1) + (t / scale).sum(-1)
    return (1 - (numerator + eps) / (denominator + eps)).mean()


def uniref_sam_loss(logits: Tensor, targets: Tensor, weights: SamLossWeights | None = None) -> dict[str, Tensor]:
    """Weighted mask losses of a batch of single-mask predictions.

    Args:
        logits: ``[B, 1, H, W]`` or ``[B, H, W]`` mask logits (the x4-upsampled SAM output).
        targets: ``[B, 1, H, W]`` or ``[B, H, W]`` 0/1 masks, zero at padding, at the same resolution.
    Returns:
        ``{"loss_mask": 2 * bce, "loss_dice": 0.5 * dice, "loss": their sum}``, computed in float32
        even under autocast (the dice sums over ~1e6 pixels).
    """
    w = weights or SamLossWeights()
    if logits.shape[-2:] != targets.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in size")
    logits = logits.reshape(logits.shape[0], -1, *logits.shape[-2:]).flatten(0, 1)
    targets = targets.reshape(targets.shape[0], -1, *targets.shape[-2:]).flatten(0, 1)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits, targets = logits.float(), targets.float()
        bce = sigmoid_bce_loss(logits, targets)
        dice = scaled_dice_loss(logits, targets, scale=w.dice_scale, eps=w.dice_eps)
    out = {"loss_mask": w.bce * bce, "loss_dice": w.dice * dice}
    out["loss"] = out["loss_mask"] + out["loss_dice"]
    return out
