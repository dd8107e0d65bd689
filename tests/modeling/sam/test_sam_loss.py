"""The UniRef-SAM loss: 2 * per-pixel-mean BCE + 0.5 * dice with scale 1000 and eps 1e-6."""

import math

import torch
import torch.nn.functional as F

from uniref.modeling.sam import uniref_sam_loss


def test_loss_matches_a_direct_computation():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 16, 16)
    targets = (torch.rand(3, 1, 16, 16) > 0.6).float()
    out = uniref_sam_loss(logits, targets)
    bce = torch.stack([F.binary_cross_entropy_with_logits(logits[i], targets[i]) for i in range(3)]).mean()
    dices = []
    for i in range(3):
        p, t = logits[i].sigmoid(), targets[i]
        num = 2 * (p * t).sum() / 1000 + 1e-6
        den = (p.sum() + t.sum()) / 1000 + 1e-6
        dices.append(1 - num / den)
    dice = torch.stack(dices).mean()
    torch.testing.assert_close(out["loss_mask"], 2 * bce)
    torch.testing.assert_close(out["loss_dice"], 0.5 * dice)
    torch.testing.assert_close(out["loss"], 2 * bce + 0.5 * dice)


def test_loss_limits():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 50
    out = uniref_sam_loss(perfect, target)
    assert out["loss"].item() < 1e-6
    # An empty target and a confident empty prediction: the eps keeps dice at ~0 (not NaN).
    empty = uniref_sam_loss(torch.full((1, 8, 8), -50.0), torch.zeros(1, 8, 8))
    assert math.isfinite(empty["loss_dice"].item()) and empty["loss_dice"].item() < 0.5 * 1e-3
