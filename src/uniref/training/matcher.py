"""Query-to-target assignment for training (spec section 10.2).

Two matchers, both per image and without gradients:

* :class:`SimOTAMatcher` - the simOTA-style dynamic-k assignment used for every decoder layer
  (``MODEL.OTA=True``). Several queries may be positive for one target.
* :class:`HungarianMatcher` - a one-to-one ``scipy.optimize.linear_sum_assignment`` match, used for the
  two-stage encoder proposals.

Naming: ``q`` = number of queries, ``k`` = number of classes, ``n`` = number of targets of one image.
Boxes are ``(cx, cy, w, h)`` normalised by the unpadded image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from uniref.layers.box_ops import box_cxcywh_to_xyxy, box_iou, generalized_box_iou

__all__ = ["Match", "SimOTAMatcher", "HungarianMatcher", "focal_class_cost"]


@dataclass
class Match:
    """The assignment of one image.

    Attributes:
        pred_idx: ``[m]`` int64, the positive query indices in increasing order.
        tgt_idx: ``[m]`` int64, the target index of each positive query.
        best_query_per_target: ``[n]`` int64, for every target the positive query with the lowest
            cost (simOTA only; the official ``matched_query_per_gt``). ``None`` for the Hungarian match.
    """

    pred_idx: Tensor
    tgt_idx: Tensor
    best_query_per_target: Tensor | None = None

    @property
    def num_matched(self) -> int:
        return int(self.pred_idx.numel())


def focal_class_cost(prob: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal-loss matching cost of ``prob`` ``[q, k]`` (sigmoid scores) against ``labels`` ``[n]`` -> ``[q, n]``.

    The 1e-8 inside the logs keeps the cost finite for saturated scores.
    """
    neg = (1 - alpha) * prob.pow(gamma) * (-(1 - prob + 1e-8).log())
    pos = alpha * (1 - prob).pow(gamma) * (-(prob + 1e-8).log())
    return pos[:, labels] - neg[:, labels]


def _empty_match(device: torch.device, with_best: bool) -> Match:
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return Match(empty, empty.clone(), empty.clone() if with_best else None)


class SimOTAMatcher:
    """simOTA dynamic-k matching (the official ``HungarianMatcher.forward_ota``).

    Cost per (query, target) = focal class cost + ``giou_weight`` * (-GIoU)
    + ``center_weight`` * (1 - [centre in box and near the target centre]),
    plus ``outside_cost`` for queries whose centre is neither inside any target box nor near any target
    centre. Each target then takes its ``k`` cheapest queries, ``k`` = max(1, floor(sum of its top
    ``num_candidates`` IoUs)).
    """

    def __init__(
        self,
        *,
        alpha: float = 0.25,
        gamma: float = 2.0,
        giou_weight: float = 3.0,
        center_weight: float = 100.0,
        outside_cost: float = 10000.0,
        center_radius: float = 2.5,
        expanded_stride: float = 32.0,
        num_candidates: int = 10,
        rematch_penalty: float = 100000.0,
    ):
        self.alpha = alpha
        self.gamma = gamma
        self.giou_weight = giou_weight
        self.center_weight = center_weight
        self.outside_cost = outside_cost
        # The "centre" region is +-2.5 / 32 in normalised coordinates, as in the official matcher.
        self.center_half_size = center_radius / expanded_stride
        self.num_candidates = num_candidates
        self.rematch_penalty = rematch_penalty

    @torch.no_grad()
    def __call__(self, logits: Tensor, boxes: Tensor, labels: list[Tensor], target_boxes: list[Tensor]) -> list[Match]:
        """Match every image of a batch.

        Args:
            logits: ``[B, q, k]`` class logits.
            boxes: ``[B, q, 4]`` predicted boxes, cxcywh normalised.
            labels: per image ``[n_b]`` int64 class ids.
            target_boxes: per image ``[n_b, 4]`` cxcywh normalised.
        """
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return [
                self.match_image(logits[b].float(), boxes[b].float(), labels[b], target_boxes[b].float())
                for b in range(logits.shape[0])
            ]

    @torch.no_grad()
    def match_image(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor) -> Match:
        """Match one image.

        Args: ``logits`` ``[q, k]``, ``boxes`` ``[q, 4]``, ``labels`` ``[n]``, ``target_boxes`` ``[n, 4]``.
        """
        num_targets = labels.numel()
        if num_targets == 0:
            return _empty_match(logits.device, with_best=True)

        pred_xyxy = box_cxcywh_to_xyxy(boxes)
        tgt_xyxy = box_cxcywh_to_xyxy(target_boxes)
        in_any, in_box_and_center = self._center_prior(boxes, target_boxes, tgt_xyxy)
        ious, _ = box_iou(pred_xyxy, tgt_xyxy)

        cost = (
            focal_class_cost(logits.sigmoid(), labels, self.alpha, self.gamma)
            - self.giou_weight * generalized_box_iou(pred_xyxy, tgt_xyxy)
            + self.center_weight * (~in_box_and_center).to(logits.dtype)
        )
        cost[~in_any] += self.outside_cost
        return self._dynamic_k(cost, ious)

    def _center_prior(self, boxes: Tensor, target_boxes: Tensor, tgt_xyxy: Tensor) -> tuple[Tensor, Tensor]:
        """``([q], [q, n])``: centre inside some box or centre region; inside both for that target."""
        cx, cy = boxes[:, 0:1], boxes[:, 1:2]
        in_box = (cx > tgt_xyxy[:, 0]) & (cx < tgt_xyxy[:, 2]) & (cy > tgt_xyxy[:, 1]) & (cy < tgt_xyxy[:, 3])
        r = self.center_half_size
        tcx, tcy = target_boxes[:, 0], target_boxes[:, 1]
        in_center = (cx > tcx - r) & (cx < tcx + r) & (cy > tcy - r) & (cy < tcy + r)
        return in_box.any(1) | in_center.any(1), in_box & in_center

    def _dynamic_k(self, cost: Tensor, ious: Tensor) -> Match:
        """Dynamic-k assignment on ``cost`` and ``ious``, both ``[q, n]``."""
        num_queries, num_targets = cost.shape
        # non-finite predictions (a diverging run) must not stall the loop below: their pairs cost more than
        # any finite one short of the rematch penalty, and the loss check after the forward pass stops the run
        worst = 2.0 * self.outside_cost
        cost = torch.nan_to_num(cost, nan=worst, posinf=worst, neginf=worst)
        assigned = torch.zeros_like(cost, dtype=torch.bool)
        top_ious, _ = torch.topk(ious, min(self.num_candidates, num_queries), dim=0)
        # floor() through an int cast as officially (the sums are non-negative)
        dynamic_ks = top_ious.sum(0).int().clamp(min=1).tolist()
        for t, k in enumerate(dynamic_ks):
            _, idx = torch.topk(cost[:, t], k=min(k, num_queries), largest=False)
            assigned[idx, t] = True
        self._keep_cheapest_target(assigned, cost)

        # A target can lose all its queries above; give it its cheapest still-free query, penalising the
        # queries already taken, until every target has one. Should two such targets pick the same free
        # query, it keeps its cheaper target and the loop runs again (spec: "resolve conflicts again"),
        # so no query ever ends with two targets.
        # (with more targets than queries some targets must stay unmatched: stop once every query is taken)
        while not assigned.any(0).all() and not assigned.any(1).all():
            cost[assigned.any(1)] += self.rematch_penalty
            for t in torch.nonzero(~assigned.any(0)).flatten().tolist():
                assigned[cost[:, t].argmin(), t] = True
            self._keep_cheapest_target(assigned, cost)

        selected = assigned.any(1)
        pred_idx = torch.nonzero(selected).flatten()
        tgt_idx = assigned[selected].int().argmax(1)
        # Cheapest positive query of each target (the official ``matched_query_per_gt``).
        best = torch.where(assigned, cost, torch.full_like(cost, float("inf"))).argmin(0)
        return Match(pred_idx, tgt_idx.to(torch.int64), best)

    @staticmethod
    def _keep_cheapest_target(assigned: Tensor, cost: Tensor) -> None:
        """In place: a query assigned to several targets keeps only its lowest-cost one."""
        multi = assigned.sum(1) > 1
        if multi.any():
            cheapest = cost[multi].argmin(1)
            rows = torch.nonzero(multi).flatten()
            assigned[rows] = False
            assigned[rows, cheapest] = True


class HungarianMatcher:
    """One-to-one matching with cost ``class_weight * focal + bbox_weight * L1 + giou_weight * (-GIoU)``.

    The official model uses it for the two-stage encoder proposals (``forward_ori``), with all labels 0.
    """

    def __init__(
        self,
        *,
        class_weight: float = 2.0,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ):
        self.class_weight = class_weight
        self.bbox_weight = bbox_weight
        self.giou_weight = giou_weight
        self.alpha = alpha
        self.gamma = gamma

    @torch.no_grad()
    def __call__(self, logits: Tensor, boxes: Tensor, labels: list[Tensor], target_boxes: list[Tensor]) -> list[Match]:
        """Match every image of a batch; arguments as :meth:`SimOTAMatcher.__call__`."""
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return [
                self.match_image(logits[b].float(), boxes[b].float(), labels[b], target_boxes[b].float())
                for b in range(logits.shape[0])
            ]

    @torch.no_grad()
    def match_image(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor) -> Match:
        """Match one image.

        Args: ``logits`` ``[q, k]``, ``boxes`` ``[q, 4]``, ``labels`` ``[n]``, ``target_boxes`` ``[n, 4]``.
        """
        if labels.numel() == 0:
            return _empty_match(logits.device, with_best=False)
        cost = (
            self.bbox_weight * torch.cdist(boxes, target_boxes, p=1)
            + self.class_weight * focal_class_cost(logits.sigmoid(), labels, self.alpha, self.gamma)
            - self.giou_weight * generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
        )
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        device = logits.device
        return Match(torch.as_tensor(rows, dtype=torch.int64, device=device),
                     torch.as_tensor(cols, dtype=torch.int64, device=device))
