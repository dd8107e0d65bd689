"""Behaviour of the simOTA and Hungarian matchers on hand-made cases (parity is in test_criterion.py)."""

from __future__ import annotations

import itertools

import torch

from uniref.layers.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from uniref.training.matcher import HungarianMatcher, SimOTAMatcher, focal_class_cost


def _dynamic_k(cost: list[list[float]], ious: list[list[float]] | None = None):
    cost_t = torch.tensor(cost)
    ious_t = torch.zeros_like(cost_t) if ious is None else torch.tensor(ious)
    return SimOTAMatcher()._dynamic_k(cost_t, ious_t)


def test_query_claimed_twice_keeps_cheapest_target_and_loser_takes_next_query():
    # k = 1 for both targets and both want query 0; it stays with target 0 (cost 0 < 1), and target 1
    # gets its cheapest query among the free ones.
    m = _dynamic_k([[0.0, 1.0], [5.0, 2.0], [6.0, 3.0]])
    assert m.pred_idx.tolist() == [0, 1]
    assert m.tgt_idx.tolist() == [0, 1]
    assert m.best_query_per_target.tolist() == [0, 1]


def test_rematch_loop_resolves_new_conflicts_until_every_target_has_a_query():
    # All three targets want query 0 (kept by target 0); targets 1 and 2 then both want query 1
    # (kept by target 1, cost 2 < 2.5); target 2 finally gets query 2.
    cost = [[0.0, 1.0, 1.5], [9.0, 2.0, 2.5], [9.0, 3.0, 4.0], [9.0, 9.0, 9.0]]
    m = _dynamic_k(cost)
    assert m.pred_idx.tolist() == [0, 1, 2]
    assert m.tgt_idx.tolist() == [0, 1, 2]
    assert m.best_query_per_target.tolist() == [0, 1, 2]


def test_dynamic_k_is_floor_of_summed_top_ious():
    # Target 0: IoUs sum to 2.7 -> k = 2; target 1: sum 0.4 -> k = max(1, 0) = 1.
    cost = [[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [5.0, 0.0]]
    ious = [[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.0, 0.1]]
    m = _dynamic_k(cost, ious)
    assert m.pred_idx.tolist() == [0, 1, 3]
    assert m.tgt_idx.tolist() == [0, 0, 1]
    assert m.best_query_per_target.tolist() == [0, 3]


def test_prefers_query_centred_in_the_box_over_a_confident_far_one():
    target = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[0.9, 0.9, 0.2, 0.2], [0.51, 0.49, 0.18, 0.22]])
    logits = torch.tensor([[5.0], [-3.0]])
    m = SimOTAMatcher().match_image(logits, boxes, torch.tensor([0]), target)
    assert m.pred_idx.tolist() == [1] and m.tgt_idx.tolist() == [0]


def test_fewer_queries_than_candidates_and_batched_call():
    torch.manual_seed(0)
    logits, boxes = torch.randn(2, 4, 1), torch.rand(2, 4, 4) * 0.4 + 0.2
    labels = [torch.zeros(2, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)]
    targets = [torch.tensor([[0.4, 0.4, 0.3, 0.3], [0.6, 0.5, 0.2, 0.4]]), torch.tensor([[0.5, 0.5, 0.5, 0.5]])]
    matches = SimOTAMatcher()(logits, boxes, labels, targets)
    assert len(matches) == 2
    for m, t in zip(matches, targets):
        assert set(m.tgt_idx.tolist()) == set(range(len(t)))  # every target supervised
        assert m.pred_idx.unique().numel() == m.pred_idx.numel()  # one target per query
        assert torch.all(m.pred_idx[1:] > m.pred_idx[:-1])


def test_zero_targets_give_empty_matches():
    logits, boxes = torch.randn(1, 5, 1), torch.rand(1, 5, 4)
    empty_labels, empty_boxes = [torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, 4)]
    for matcher in (SimOTAMatcher(), HungarianMatcher()):
        (m,) = matcher(logits, boxes, empty_labels, empty_boxes)
        assert m.num_matched == 0 and m.tgt_idx.numel() == 0 and m.pred_idx.dtype == torch.int64
    (m,) = SimOTAMatcher()(logits, boxes, empty_labels, empty_boxes)
    assert m.best_query_per_target.numel() == 0


def test_hungarian_is_the_optimal_one_to_one_assignment():
    torch.manual_seed(1)
    logits, boxes = torch.randn(1, 5, 1), torch.rand(1, 5, 4) * 0.4 + 0.2
    labels, targets = torch.zeros(3, dtype=torch.int64), torch.rand(3, 4) * 0.4 + 0.2
    (m,) = HungarianMatcher()(logits, boxes, [labels], [targets])
    cost = (
        5 * torch.cdist(boxes[0], targets, p=1)
        + 2 * focal_class_cost(logits[0].sigmoid(), labels)
        - 2 * generalized_box_iou(box_cxcywh_to_xyxy(boxes[0]), box_cxcywh_to_xyxy(targets))
    )
    best = min(sum(cost[q, t].item() for t, q in enumerate(p)) for p in itertools.permutations(range(5), 3))
    assert m.num_matched == 3
    assert torch.all(m.pred_idx[1:] > m.pred_idx[:-1])
    assert abs(cost[m.pred_idx, m.tgt_idx].sum().item() - best) < 1e-5


def test_non_finite_costs_and_more_targets_than_queries_terminate():
    # a NaN prediction (a diverging run) used to make the conflict loop spin forever
    nan = float("nan")
    m = _dynamic_k([[nan, nan, 1.0], [nan, nan, 2.0], [0.5, 3.0, nan]])
    assert sorted(m.tgt_idx.tolist()) == [0, 1, 2] and len(set(m.pred_idx.tolist())) == 3
    # three targets, two queries: each query keeps one target, the third target stays unmatched
    m = _dynamic_k([[0.0, 1.0, 2.0], [3.0, 0.5, 1.0]])
    assert m.pred_idx.tolist() == [0, 1] and m.tgt_idx.tolist() == [0, 1]
