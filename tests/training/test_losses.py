"""Closed-form checks of the loss functions (parity with the official values is in test_criterion.py)."""

from __future__ import annotations

import torch

from uniref.layers.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from uniref.training import losses as L


def test_sigmoid_focal_loss_closed_form():
    x = torch.tensor([-2.0, 0.3, 1.5, -0.7])
    t = torch.tensor([1.0, 1.0, 0.0, 0.0])
    p = x.sigmoid()
    expected = torch.where(t > 0, -0.25 * (1 - p) ** 2 * p.log(), -0.75 * p**2 * (1 - p).log())
    torch.testing.assert_close(L.sigmoid_focal_loss(x, t), expected, rtol=1e-6, atol=1e-7)


def test_dice_loss_closed_form_and_perfect_mask():
    x = torch.tensor([[2.0, -1.0, 0.5]])
    t = torch.tensor([[1.0, 0.0, 1.0]])
    p = x.sigmoid()
    expected = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    torch.testing.assert_close(L.dice_loss(x, t), expected.reshape(1))
    assert L.dice_loss(torch.full((1, 4), 40.0), torch.ones(1, 4)).item() < 1e-6


def test_giou_loss_equals_one_minus_generalized_iou():
    torch.manual_seed(0)
    a = box_cxcywh_to_xyxy(torch.rand(6, 4) * 0.5 + 0.2)
    b = box_cxcywh_to_xyxy(torch.rand(6, 4) * 0.5 + 0.2)
    torch.testing.assert_close(L.giou_loss(a, b), 1 - torch.diag(generalized_box_iou(a, b)), rtol=1e-5, atol=1e-6)


def test_soft_aggregation_of_one_object_is_sigmoid_of_twice_the_logit():
    x = torch.linspace(-8, 8, 17)
    probs = L._single_object_logits(x[None]).softmax(dim=1)[0]  # [2, p]
    torch.testing.assert_close(probs[0], torch.sigmoid(-2 * x), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(probs[1], torch.sigmoid(2 * x), rtol=1e-4, atol=1e-6)
    # saturated logits stay finite thanks to the clamp
    assert torch.isfinite(L._single_object_logits(torch.tensor([[-100.0, 100.0]]))).all()


def test_soft_aggregation_background_is_product_of_complements():
    prob = torch.tensor([[0.2, 0.9], [0.5, 0.3]])  # 2 objects, 2 pixels
    q = L.soft_aggregate(prob).softmax(dim=0)
    unnormalised = torch.cat([torch.prod(1 - prob, 0, keepdim=True), prob]) / (
        1 - torch.cat([torch.prod(1 - prob, 0, keepdim=True), prob])
    )
    torch.testing.assert_close(q, unnormalised / unnormalised.sum(0), rtol=1e-5, atol=1e-7)


def test_bootstrapped_cross_entropy_keeps_the_hardest_forty_percent_per_instance():
    torch.manual_seed(0)
    x, t = torch.randn(3, 20), (torch.rand(3, 20) > 0.5).float()
    kept = L.bootstrapped_cross_entropy(x, t)
    assert kept.shape == (3, 8)  # int(20 * 0.4)
    q_true = torch.where(t > 0, torch.sigmoid(2 * x), torch.sigmoid(-2 * x))
    hardest = (-q_true.log()).topk(8, dim=-1).values
    torch.testing.assert_close(kept.sort(-1).values, hardest.sort(-1).values, rtol=1e-4, atol=1e-5)


def test_soft_iou_of_confident_correct_mask_is_one():
    t = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert abs(L.soft_iou(40 * (2 * t - 1), t).item() - 1) < 1e-5
    assert L.soft_iou(-40 * (2 * t - 1), t).item() < 1e-5
