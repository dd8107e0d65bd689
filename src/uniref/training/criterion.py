"""The UniRef++ training criterion (spec sections 10.1-10.3).

The official flow has three steps per decoder layer, and this module follows it:

1. :meth:`SetCriterion.match` assigns queries to targets (simOTA, per layer);
2. the caller runs the dynamic mask head on the matched queries only (``pred_idx`` order), using
   :func:`matched_batch_indices` to gather them;
3. :meth:`SetCriterion.__call__` computes every loss term of every layer.

Loss names: the last decoder layer has no suffix, decoder layer ``i < L-1`` has ``_i`` and the two-stage
encoder proposals ``_enc`` (class and box terms only, matched with the Hungarian matcher).

Every term of a layer is divided by that layer's number of matched queries in the batch (clamped to 1),
except ``loss_mask_cls``, which is a plain mean over the kept pixels.

Zero targets: an image without targets has no matched query, so it adds only background terms to
``loss_ce``; box and mask terms are sums over no instances, i.e. exactly 0 (still attached to the graph).
If the whole batch has no match the normaliser is 1 and every box and mask term is 0: ``loss_mask_cls``
would otherwise be the NaN of a mean over nothing and ``loss_mask_iou`` the constant ``1 - 0 / 1``.

Naming: ``B`` = batch, ``Q`` = queries, ``K`` = classes, ``n`` = targets of one image, ``m`` = matched
queries of one image, ``Hp, Wp`` = padded image size, ``h, w`` = predicted mask size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from uniref.layers.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from uniref.training import losses as L
from uniref.training.matcher import HungarianMatcher, Match, SimOTAMatcher

__all__ = [
    "Target",
    "LayerPredictions",
    "LossWeights",
    "LossOutput",
    "SetCriterion",
    "matched_batch_indices",
]


@dataclass
class Target:
    """The ground truth of one image.

    Attributes:
        labels: ``[n]`` int64 class ids (all 0 for the class-agnostic model).
        boxes: ``[n, 4]`` float (cx, cy, w, h) normalised by the unpadded ``image_size``.
        masks: ``[n, Hp, Wp]`` bool, zero-padded to the batch size (a multiple of 32).
        image_size: ``(h, w)`` of the unpadded (augmented) image.
    """

    labels: Tensor
    boxes: Tensor
    masks: Tensor
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        if self.boxes.shape != (n, 4) or self.masks.dim() != 3 or self.masks.shape[0] != n:
            raise ValueError(
                f"Target needs labels [n], boxes [n, 4], masks [n, Hp, Wp]; got {tuple(self.labels.shape)}, "
                f"{tuple(self.boxes.shape)}, {tuple(self.masks.shape)}"
            )

    @classmethod
    def from_pixel_boxes(
        cls, labels: Tensor, boxes_xyxy: Tensor, masks: Tensor, image_size: tuple[int, int]
    ) -> Target:
        """Build from ``[n, 4]`` (x0, y0, x1, y1) pixel boxes of the unpadded image of size ``(h, w)``."""
        h, w = image_size
        scale = boxes_xyxy.new_tensor([w, h, w, h])
        return cls(labels, box_xyxy_to_cxcywh(boxes_xyxy) / scale, masks, image_size)


@dataclass
class LayerPredictions:
    """The outputs of one decoder layer (or of the encoder proposals).

    Attributes:
        logits: ``[B, Q, K]`` class logits.
        boxes: ``[B, Q, 4]`` sigmoid boxes, cxcywh normalised.
        masks: per image ``[m, h, w]`` mask logits of the matched queries, in ``Match.pred_idx`` order,
            at stride 4 (``h = Hp / 4``, image tasks) or at the padded size (VOS). ``None`` before the
            mask head ran, and for the encoder proposals: then no mask term is computed.
    """

    logits: Tensor
    boxes: Tensor
    masks: list[Tensor] | None = None


@dataclass(frozen=True)
class LossWeights:
    """Weight of each loss term (the official values); the same for every layer."""

    ce: float = 2.0
    bbox: float = 5.0
    giou: float = 2.0
    mask: float = 2.0
    dice: float = 5.0
    mask_cls: float = 1.0
    mask_iou: float = 1.0

    def weight_dict(self, num_decoder_layers: int) -> dict[str, float]:
        """Name -> weight for every suffix, in the official layout (``_enc`` copies the mask weights too)."""
        base = {f"loss_{f.name}": getattr(self, f.name) for f in fields(self)}
        suffixes = [""] + [f"_{i}" for i in range(num_decoder_layers - 1)] + ["_enc"]
        return {k + s: v for s in suffixes for k, v in base.items()}


@dataclass
class LossOutput:
    """Raw and weighted loss terms, scalars keyed by name (``loss_ce``, ``loss_ce_0``, ``loss_ce_enc``...)."""

    raw: dict[str, Tensor]
    weighted: dict[str, Tensor]

    @property
    def total(self) -> Tensor:
        """The training loss: the plain sum of the weighted terms."""
        return torch.stack(list(self.weighted.values())).sum()


def matched_batch_indices(matches: Sequence[Match]) -> tuple[Tensor, Tensor]:
    """``([M], [M])`` (image index, query index) of every matched query of a batch, image by image."""
    batch = [torch.full_like(m.pred_idx, b) for b, m in enumerate(matches)]
    return torch.cat(batch), torch.cat([m.pred_idx for m in matches])


class SetCriterion:
    """Matching and losses of UniRef++ with ``OTA=True`` and deep supervision.

    Args:
        weights: the per-term weights.
        focal_alpha, focal_gamma: the sigmoid focal loss parameters (class and mask terms).
        mask_aux_loss: add ``loss_mask_cls`` and ``loss_mask_iou`` (the video stage; ``MASK_AUX_LOSS``).
        mask_cls_top_fraction: share of the hardest pixels kept by ``loss_mask_cls``.
        layer_matcher: the per-decoder-layer matcher (default simOTA).
        encoder_matcher: the matcher for the encoder proposals (default Hungarian, costs 2/5/2).
    """

    def __init__(
        self,
        *,
        weights: LossWeights | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        mask_aux_loss: bool = True,
        mask_cls_top_fraction: float = 0.4,
        layer_matcher: SimOTAMatcher | None = None,
        encoder_matcher: HungarianMatcher | None = None,
    ):
        self.weights = weights or LossWeights()
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.mask_aux_loss = mask_aux_loss
        self.mask_cls_top_fraction = mask_cls_top_fraction
        self.layer_matcher = layer_matcher or SimOTAMatcher()
        self.encoder_matcher = encoder_matcher or HungarianMatcher()

    # ----------------------------------------------------------------------------------------- matching

    def match(self, layer: LayerPredictions, targets: Sequence[Target]) -> list[Match]:
        """simOTA match of one decoder layer: one :class:`Match` per image."""
        return self.layer_matcher(layer.logits, layer.boxes, [t.labels for t in targets], [t.boxes for t in targets])

    def match_encoder(self, encoder: LayerPredictions, targets: Sequence[Target]) -> list[Match]:
        """Hungarian match of the encoder proposals; every label is treated as class 0 (agnostic)."""
        labels = [torch.zeros_like(t.labels) for t in targets]
        return self.encoder_matcher(encoder.logits, encoder.boxes, labels, [t.boxes for t in targets])

    # ------------------------------------------------------------------------------------------- losses

    def __call__(
        self,
        layers: Sequence[LayerPredictions],
        targets: Sequence[Target],
        matches: Sequence[Sequence[Match]],
        *,
        encoder: LayerPredictions | None = None,
        encoder_matches: Sequence[Match] | None = None,
    ) -> LossOutput:
        """All loss terms with deep supervision.

        Args:
            layers: the decoder layers, first to last, each with the masks of its own matched queries.
            targets: one :class:`Target` per image.
            matches: per layer, the output of :meth:`match` for that layer.
            encoder: the encoder proposals (``_enc`` terms); skipped when ``None``.
            encoder_matches: their match; computed with :meth:`match_encoder` when ``None``.
        """
        if len(matches) != len(layers):
            raise ValueError(f"got {len(layers)} layers but {len(matches)} match lists")
        num_layers = len(layers)
        raw: dict[str, Tensor] = {}
        # The official dict lists the last layer first, then the auxiliary layers, then the encoder.
        order = [num_layers - 1] + list(range(num_layers - 1))
        for i in order:
            suffix = "" if i == num_layers - 1 else f"_{i}"
            for name, value in self.layer_losses(layers[i], targets, matches[i]).items():
                raw[name + suffix] = value
        if encoder is not None:
            if encoder_matches is None:
                encoder_matches = self.match_encoder(encoder, targets)
            enc = LayerPredictions(encoder.logits, encoder.boxes)  # no mask terms for the proposals
            for name, value in self.layer_losses(enc, targets, encoder_matches).items():
                raw[name + "_enc"] = value
        weight_dict = self.weights.weight_dict(num_layers)
        return LossOutput(raw, {k: v * weight_dict[k] for k, v in raw.items()})

    def layer_losses(
        self, layer: LayerPredictions, targets: Sequence[Target], matches: Sequence[Match]
    ) -> dict[str, Tensor]:
        """The unsuffixed terms of one layer; mask terms only when ``layer.masks`` is set."""
        with torch.autocast(device_type=layer.logits.device.type, enabled=False):
            normalizer = float(max(sum(m.num_matched for m in matches), 1))
            out = {
                "loss_ce": self._class_loss(layer.logits.float(), targets, matches, normalizer),
                **self._box_losses(layer.boxes.float(), targets, matches, normalizer),
            }
            if layer.masks is not None:
                out.update(self._mask_losses(layer.masks, targets, matches, normalizer))
        return out

    def _class_loss(
        self, logits: Tensor, targets: Sequence[Target], matches: Sequence[Match], normalizer: float
    ) -> Tensor:
        """Focal loss over all ``[B, Q, K]`` logits against one-hot targets at the matched queries."""
        onehot = torch.zeros_like(logits)
        for b, (t, m) in enumerate(zip(targets, matches)):
            onehot[b, m.pred_idx, t.labels[m.tgt_idx]] = 1.0
        loss = L.sigmoid_focal_loss(logits, onehot, self.focal_alpha, self.focal_gamma)
        # = sum / normalizer; written as the official mean-over-queries times Q so the float32 rounding agrees
        return loss.mean(1).sum() / normalizer * logits.shape[1]

    def _box_losses(
        self, boxes: Tensor, targets: Sequence[Target], matches: Sequence[Match], normalizer: float
    ) -> dict[str, Tensor]:
        src = torch.cat([boxes[b, m.pred_idx] for b, m in enumerate(matches)])
        tgt = torch.cat([t.boxes.to(boxes)[m.tgt_idx] for t, m in zip(targets, matches)])
        return {
            "loss_bbox": (src - tgt).abs().sum() / normalizer,
            "loss_giou": L.giou_loss(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt)).sum() / normalizer,
        }

    def _mask_losses(
        self, masks: Sequence[Tensor], targets: Sequence[Target], matches: Sequence[Match], normalizer: float
    ) -> dict[str, Tensor]:
        src = torch.cat([self._check_masks(p, m).float().flatten(1) for p, m in zip(masks, matches)])
        tgt = torch.cat([
            _mask_targets(t.masks[m.tgt_idx], p.shape[-2:]).flatten(1) for t, p, m in zip(targets, masks, matches)
        ]).to(src)
        out = {
            "loss_mask": L.sigmoid_focal_loss(src, tgt, self.focal_alpha, self.focal_gamma).mean(1).sum() / normalizer,
            "loss_dice": L.dice_loss(src, tgt).sum() / normalizer,
        }
        if self.mask_aux_loss:
            if src.shape[0] == 0:
                # Without any matched query: a mean over no pixel would be NaN and the literal
                # 1 - 0 / 1 would be a constant 1; both are exact zeros here, still on the graph.
                zero = src.sum() * 0.0
                out["loss_mask_cls"], out["loss_mask_iou"] = zero, zero.clone()
            else:
                kept = L.bootstrapped_cross_entropy(src, tgt, self.mask_cls_top_fraction)
                out["loss_mask_cls"] = kept.mean()
                # 1 - (sum of IoUs) / normalizer, in this order as officially (equal to the mean of 1 - IoU)
                out["loss_mask_iou"] = 1 - L.soft_iou(src, tgt).sum() / normalizer
        return out

    @staticmethod
    def _check_masks(pred: Tensor, match: Match) -> Tensor:
        if pred.dim() != 3 or pred.shape[0] != match.num_matched:
            raise ValueError(
                f"expected mask logits [m={match.num_matched}, h, w] for the matched queries in pred_idx "
                f"order, got {tuple(pred.shape)}"
            )
        return pred


def _mask_targets(masks: Tensor, pred_size: tuple[int, int] | torch.Size) -> Tensor:
    """``[m, Hp, Wp]`` padded GT masks -> ``[m, h, w]`` at the prediction's stride.

    A stride-s prediction is supervised by the GT pixels ``[s//2::s, s//2::s]`` (sampled, not
    interpolated): ``[2::4, 2::4]`` at stride 4, the full mask at stride 1 (VOS).
    """
    (hp, wp), (h, w) = masks.shape[-2:], tuple(pred_size)
    stride = hp // h if h else 0
    if stride < 1 or hp != h * stride or wp != w * stride:
        raise ValueError(
            f"mask logits of size {(h, w)} do not divide the padded target size {(hp, wp)} by one integer "
            "stride; predict at stride 4 (image tasks) or at the padded size (VOS)"
        )
    start = stride // 2
    return masks[:, start::stride, start::stride]
