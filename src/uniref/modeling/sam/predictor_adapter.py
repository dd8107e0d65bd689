"""UniRef-SAM behind the interface :class:`~uniref.inference.image_predictor.ImagePredictor` and
:class:`~uniref.inference.video_predictor.VideoPredictor` drive, so the four tasks run unchanged.

The predictors were written for :class:`~uniref.modeling.uniref.UniRef`; they call ``config.*_test_size``,
``normalize``, ``pad_batch``, ``extract_features``, ``encode_text``, ``encode_mask`` and ``decode``, and read
``pred_logits`` / ``pred_boxes`` / ``top1`` / ``pred_masks`` of the output. :class:`SamPredictorAdapter` maps
them onto :class:`~uniref.modeling.sam.UniRefSAM`:

* input: every ``*_test_size`` is ``(S, S)`` with ``S = img_size``, which the predictors' shortest-edge
  resize turns into "longest side = S" (SAM's rule); ``pad_batch`` zero-pads to the ``S x S`` square;
* features: SAM's image embedding ``[B, C, g, g]`` plus the unpadded size of each image, from which the
  padding of the ``g x g`` grid is derived (a cell is padding when all its pixels are, unless the config
  reproduces ``official_padding_bug``);
* output: one mask per entry (``top1`` = 0), SAM's IoU prediction as the score. The predictors turn class
  logits into a score with a sigmoid, so the IoU is handed over as ``logit(clamp(iou, eps, 1 - eps))``: a
  threshold ``sigma`` in (0, 1) is passed exactly when the IoU exceeds it, as in the official evaluation.
  The box is the bounding box of the binarised mask (SAM predicts no box), so an empty mask gives an empty
  box and an empty image result.

The predictors pick the adapter up through :meth:`UniRefSAM.predictor_adapter`; nothing else is needed::

    model = uniref.build_model("sam_vit_b", weights="uniref_sam_vit_b.pth")
    ImagePredictor(model).segment(image, text="the dog on the left")

Naming: ``B`` entries (images, or one frame expanded per object), ``S`` the square input side, ``g = S / 16``,
``C`` the prompt dimension (256).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from uniref.modeling.reference.features import ReferenceFeatures

# Clamp of the IoU before its logit: keeps the sigmoid round trip finite and within ~1e-7 of the IoU.
_IOU_EPS = 1e-6


@dataclass
class SamVisualFeatures:
    """SAM features of a padded batch, in the role of :class:`~uniref.modeling.uniref.VisualFeatures`.

    Attributes:
        embeddings: ``[B, C, g, g]`` SAM image embeddings (un-fused).
        image_sizes: ``[B, 2]`` (H, W) of each image inside the ``S x S`` square.
        image_mask: ``[B, S, S]`` bool, True at padding.
    """

    embeddings: Tensor
    image_sizes: Tensor
    image_mask: Tensor

    def expand(self, n: int) -> "SamVisualFeatures":
        """Repeat a single image ``n`` times along the batch (one entry per tracked object), without copies."""
        if self.embeddings.shape[0] != 1:
            raise ValueError("expand() needs a batch of one image")
        return SamVisualFeatures(
            self.embeddings.expand(n, -1, -1, -1), self.image_sizes.expand(n, -1), self.image_mask.expand(n, -1, -1)
        )

    def index_select(self, index: Tensor) -> "SamVisualFeatures":
        return SamVisualFeatures(
            self.embeddings.index_select(0, index), self.image_sizes.index_select(0, index),
            self.image_mask.index_select(0, index),
        )


@dataclass
class SamPredictorOutput:
    """What the predictors read of a decode call, in UniRef's layout with a single query.

    Attributes:
        pred_logits: ``[B, 1, 1]`` ``logit(clamp(iou, eps, 1 - eps))``: its sigmoid is the (clamped) IoU.
        pred_boxes: ``[B, 1, 4]`` cxcywh in [0, 1] of the unpadded image: the box of the binarised mask
            (all zero when the mask is empty).
        top1: ``[B]`` int64 zeros (one mask per entry).
        pred_masks: ``[B, 1, 1, h, w]`` mask logits of the padded square at the asked stride (stride 4: SAM's
            low-res logits; stride 1: those upsampled x4, bilinear), or None when masks were not asked for.
        scores: ``[B]`` SAM's raw IoU prediction (not clamped).
        low_res_masks: ``[B, 1, S/4, S/4]`` the mask decoder's logits.
    """

    pred_logits: Tensor
    pred_boxes: Tensor
    top1: Tensor
    pred_masks: Tensor | None
    scores: Tensor
    low_res_masks: Tensor


class SamPredictorAdapter:
    """The UniRef predictor interface over a :class:`~uniref.modeling.sam.UniRefSAM` (which it does not copy).

    Args:
        model: the UniRef-SAM network; ``adapter.sam_model`` gives it back.
    """

    def __init__(self, model):
        self.sam_model = model

    # ------------------------------------------------------------------ module-like
    @property
    def config(self):
        """The model's :class:`~uniref.modeling.sam.UniRefSamConfig` (it has the ``*_test_size`` properties)."""
        return self.sam_model.config

    @property
    def device(self) -> torch.device:
        return self.sam_model.device

    def eval(self) -> "SamPredictorAdapter":
        self.sam_model.eval()
        return self

    def normalize(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB on the 0-255 scale -> normalised float."""
        return self.sam_model.normalize(images)

    # ------------------------------------------------------------------ inputs
    def pad_batch(self, images: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Zero-pad normalised ``[3, H_i, W_i]`` images (``H_i, W_i <= S``) bottom/right to ``S x S``.

        Returns ``(batch [B, 3, S, S], padding_mask [B, S, S] True at padding, image_sizes [B, 2] (H, W))``.
        """
        s = self.config.img_size
        batch = images[0].new_zeros((len(images), 3, s, s))
        mask = torch.ones((len(images), s, s), dtype=torch.bool, device=batch.device)
        for i, t in enumerate(images):
            h, w = t.shape[-2:]
            if h > s or w > s:
                raise ValueError(f"image of size {h}x{w} does not fit the {s}x{s} SAM input; resize its longest side to {s}")
            batch[i, :, :h, :w] = t
            mask[i, :h, :w] = False
        sizes = torch.tensor([[int(t.shape[-2]), int(t.shape[-1])] for t in images], device=batch.device)
        return batch, mask, sizes

    # ------------------------------------------------------------------ encoders
    def extract_features(self, images: Tensor, padding_mask: Tensor) -> SamVisualFeatures:
        """SAM's image embedding of ``[B, 3, S, S]`` normalised, padded images (``padding_mask`` ``[B, S, S]``)."""
        s = self.config.img_size
        if tuple(images.shape[-2:]) != (s, s):
            raise ValueError(f"SAM needs {s}x{s} inputs (use pad_batch); got {tuple(images.shape[-2:])}")
        valid = ~padding_mask
        # the padding is bottom/right, so the valid rows (columns) are those with any valid pixel
        sizes = torch.stack([valid.any(2).sum(1), valid.any(1).sum(1)], dim=1)
        return SamVisualFeatures(self.sam_model.encode_image(images), sizes, padding_mask)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> ReferenceFeatures:
        """``[B, T]`` token ids and attention mask -> a one-level language reference."""
        return self.sam_model.encode_text(input_ids, attention_mask)

    def encode_mask(self, images: Tensor, masks: Tensor, features: SamVisualFeatures) -> ReferenceFeatures:
        """A one-level mask reference per entry: ``images`` ``[B, 3, S, S]``, ``masks`` ``[B, 1, S, S]`` 0/1
        (zero at padding), ``features`` of the same images."""
        return self.sam_model.encode_mask(images, masks, features.embeddings, features.image_sizes)

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        features: SamVisualFeatures,
        image_sizes: Tensor,
        *,
        lang: ReferenceFeatures | None = None,
        mask: ReferenceFeatures | None = None,
        masks: str | None = "all",
        mask_out_stride: int = 4,
    ) -> SamPredictorOutput:
        """Fuse the references, prompt SAM with the pooled reference and decode one mask per entry.

        Args:
            features: batch ``B`` (expand a frame per object beforehand).
            image_sizes: ``[B, 2]`` unpadded (H, W), for the boxes.
            lang, mask: references with batch ``B``; at least one.
            masks: ``"all"`` or ``"top1"`` (the same single mask) or None (no ``pred_masks``).
            mask_out_stride: stride of ``pred_masks`` on the padded square: 4 or 1 (or any divisor of ``S``).
        """
        if masks not in ("all", "top1", None):
            raise ValueError(f"masks must be 'all', 'top1' or None, not {masks!r}")
        out = self.sam_model.decode(features.embeddings, lang=lang, mask=mask)
        iou = out.scores
        pred_logits = torch.logit(iou.detach().double().clamp(_IOU_EPS, 1 - _IOU_EPS)).to(iou.dtype)[:, None, None]
        pred_masks = None
        if masks is not None:
            pred_masks = _at_stride(out.low_res_masks, out.pred_masks, mask_out_stride, self.config.img_size)[:, :, None]
        boxes = _mask_boxes(out.pred_masks[:, 0], image_sizes, self.config.mask_threshold)[:, None]
        top1 = torch.zeros(iou.shape[0], dtype=torch.long, device=iou.device)
        return SamPredictorOutput(pred_logits, boxes, top1, pred_masks, iou, out.low_res_masks)


def _at_stride(low_res: Tensor, full: Tensor, stride: int, size: int) -> Tensor:
    """``[B, 1, S/4, S/4]`` / ``[B, 1, S, S]`` logits -> ``[B, 1, S/stride, S/stride]``."""
    if stride == 4:
        return low_res
    if stride == 1:
        return full
    if size % stride:
        raise ValueError(f"mask_out_stride {stride} does not divide the {size}-pixel input")
    return F.interpolate(full, size=(size // stride, size // stride), mode="bilinear", align_corners=False)


def _mask_boxes(logits: Tensor, image_sizes: Tensor, threshold: float) -> Tensor:
    """Bounding boxes of the binarised masks, as UniRef's ``pred_boxes``.

    Args:
        logits: ``[B, S, S]`` full-resolution mask logits of the padded square.
        image_sizes: ``[B, 2]`` unpadded (H, W).
        threshold: the probability above which a pixel is on (the predictors' ``mask_threshold``).
    Returns:
        ``[B, 4]`` cxcywh normalised to the unpadded image; zeros for an empty mask. The box spans whole
        pixels (``x1 = last column + 1``), so it maps back onto the mask's pixels.
    """
    boxes = logits.new_zeros((logits.shape[0], 4), dtype=torch.float32)
    for i, (h, w) in enumerate(image_sizes.tolist()):
        on = logits[i, :h, :w].float().sigmoid() > threshold
        rows = torch.nonzero(on.any(1)).flatten()
        cols = torch.nonzero(on.any(0)).flatten()
        if rows.numel() == 0:
            continue
        x0, x1 = float(cols[0]), float(cols[-1]) + 1
        y0, y1 = float(rows[0]), float(rows[-1]) + 1
        boxes[i] = torch.tensor([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h])
    return boxes
