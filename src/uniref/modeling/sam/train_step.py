"""One UniRef-SAM training forward pass on a training-engine batch (spec section 12).

:class:`SamTrainingModel` plays, for :class:`~uniref.modeling.sam.UniRefSAM`, the role the training engine's
``TrainingModel`` plays for UniRef: an ``nn.Module`` whose ``forward(batch)`` returns the loss, so that
``DistributedDataParallel`` can wrap it. The batch is the engine's ``TrainBatch`` (read by attribute only:
``task``, ``images``, ``masks``, ``input_ids``, ``attention_mask``, ``ref_images``, ``ref_masks``), and the
result has the fields of the engine's ``StepOutput`` (``loss``, ``terms``, ``num_matched``).

Per batch:

1. the target images and the mask-reference images are resized so their longest side is ``S`` (SAM's rule,
   whatever size the augmentation produced), normalised, zero-padded to ``S x S`` and embedded by SAM's
   image encoder in one call; with the encoder frozen no graph is built for it;
2. the expressions and/or the reference masks are encoded (the reference masks are resized with their
   images, nearest);
3. UniFusion, the reference prompt token and SAM's mask decoder give one mask per sample;
4. the target is the union of the sample's target masks (one object for RIS / VOS / RVOS, the class
   foreground for FSS), at the padded ``S x S`` resolution, zero in the padding;
5. the loss is 2 x BCE + 0.5 x dice (:func:`~uniref.modeling.sam.loss.uniref_sam_loss`). There is no
   matching: every sample has exactly one prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from uniref.modeling.sam.loss import SamLossWeights, uniref_sam_loss


@dataclass
class SamStepOutput:
    """The loss to back-propagate and its (local, unscaled) terms for logging; the engine's ``StepOutput``.

    Attributes:
        loss: scalar, ``loss_mask + loss_dice``.
        terms: ``{"loss_mask": ..., "loss_dice": ...}`` as floats.
        num_matched: the number of supervised masks (one per sample).
    """

    loss: Tensor
    terms: dict[str, float]
    num_matched: int


class SamTrainingModel(nn.Module):
    """UniRef-SAM plus its loss as one module whose forward computes the loss of a training batch.

    Freezing is not done here: call :func:`~uniref.modeling.sam.training.freeze_for_training` on the model
    first (SAM frozen except its mask decoder; BERT frozen too in the video stage).

    Args:
        model: the network (its parameters are this module's ``model.*``).
        loss_weights: the BCE / dice weights (default 2.0 / 0.5).
    """

    def __init__(self, model: nn.Module, *, loss_weights: SamLossWeights | None = None):
        super().__init__()
        self.model = model
        self.loss_weights = loss_weights or SamLossWeights()

    def forward(self, batch) -> SamStepOutput:
        model = self.model
        b = len(batch.images)
        refs = list(batch.ref_images) if batch.ref_images is not None else []
        images, sizes = model.prepare_images(list(batch.images) + refs)  # [B + R, 3, S, S], [B + R, 2]
        encoder_trains = any(p.requires_grad for p in model.sam.image_encoder.parameters())
        with torch.set_grad_enabled(encoder_trains and torch.is_grad_enabled()):
            embeddings = model.encode_image(images)

        lang = None
        if batch.input_ids is not None:
            lang = model.encode_text(batch.input_ids, batch.attention_mask)
        mask_ref = None
        if refs:
            ref_masks = model.prepare_masks(list(batch.ref_masks), sizes[b:])
            mask_ref = model.encode_mask(images[b:], ref_masks, embeddings[b:], sizes[b:])

        out = model.decode(embeddings[:b], lang=lang, mask=mask_ref)
        targets = model.prepare_masks([union_target(m) for m in batch.masks], sizes[:b])
        losses = uniref_sam_loss(out.pred_masks, targets.to(out.pred_masks.dtype), self.loss_weights)
        terms = {k: float(losses[k].detach()) for k in ("loss_mask", "loss_dice")}
        return SamStepOutput(losses["loss"], terms, b)


def union_target(masks: Tensor) -> Tensor:
    """``[n, H, W]`` (or ``[H, W]``) bool target masks of one sample -> ``[H, W]`` their union."""
    return masks.bool().any(0) if masks.dim() == 3 else masks.bool()
