"""Referring image segmentation (a sentence) and few-shot segmentation (examples with masks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from uniref.inference.postprocess import binary_mask_image_task, boxes_to_original
from uniref.inference.preprocess import pad_mask, predictor_model, prepare_image, resize_mask_nearest
from uniref.inference.results import ImageResult
from uniref.io.images import load_image
from uniref.io.masks import load_binary_mask, validate_mask_size
from uniref.modeling.reference.templates import aggregate_shots


class ImagePredictor:
    """Wraps a :class:`~uniref.modeling.uniref.UniRef` (or a :class:`~uniref.modeling.sam.UniRefSAM`, through
    its ``predictor_adapter`` hook) for single images.

    ``segment(image, text="the dog on the left")`` for RIS, ``segment(image, examples=[(img, mask), ...])``
    for FSS (k examples are aggregated into one reference, as the official k-shot evaluation does).
    The resize rules are the model config's (RIS: 800/1333, FSS: 480/768 for the official sizes).
    """

    def __init__(self, model):
        self.model = predictor_model(model).eval()
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from uniref.inference.text import TextTokenizer

            self._tokenizer = TextTokenizer(self.model)
        return self._tokenizer

    @torch.inference_mode()
    def segment(
        self,
        image: Any,
        *,
        text: str | None = None,
        examples: Sequence[tuple[Any, Any]] | None = None,
    ) -> ImageResult:
        """Segment the object a sentence (RIS) or a set of examples (FSS) refers to.

        Args:
            image: path, PIL image, ``[H, W, 3]`` array or tensor.
            text: the referring sentence.
            examples: ``[(image, mask), ...]`` — each mask a path, PIL image or ``[H, W]`` array of its image's size.
        """
        if (text is None) == (examples is None):
            raise ValueError("give exactly one of text= (referring segmentation) or examples= (few-shot)")
        img = load_image(image)
        model = self.model
        cfg = model.config
        if text is not None:
            ids, att = self.tokenizer([text], model.device)
            lang = model.encode_text(ids, att)
            prepared = prepare_image(model, img, cfg.ris_test_size.short, cfg.ris_test_size.max_size)
            mask_ref = None
        else:
            if len(examples) == 0:
                raise ValueError("few-shot segmentation needs at least one example (image, mask)")
            mask_ref = self._example_reference(examples)
            prepared = prepare_image(model, img, cfg.fss_test_size.short, cfg.fss_test_size.max_size)
            lang = None
        batch, pmask, sizes = model.pad_batch([prepared.tensor])
        feats = model.extract_features(batch, pmask)
        out = model.decode(feats, sizes, lang=lang, mask=mask_ref, masks="top1", mask_out_stride=4)
        q = int(out.top1[0])
        score = float(out.pred_logits[0, q].sigmoid().max())
        mask = binary_mask_image_task(out.pred_masks[0, :, 0], prepared.size, prepared.original_size,
                                      cfg.mask_threshold)[0]
        box = boxes_to_original(out.pred_boxes[0, q : q + 1], prepared.size, prepared.original_size)[0]
        empty = bool((box[2] <= box[0]) or (box[3] <= box[1]))
        return ImageResult(mask.cpu().numpy(), score, box.cpu().numpy(), q, empty)

    def _example_reference(self, examples):
        model = self.model
        cfg = model.config
        images, masks = [], []
        for i, pair in enumerate(examples):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"example {i} must be an (image, mask) pair")
            ex_img = load_image(pair[0])
            ex_mask = load_binary_mask(pair[1])
            validate_mask_size(ex_mask, ex_img.shape[:2], what=f"mask of example {i}", frame_what=f"example image {i}")
            if not ex_mask.any():
                raise ValueError(f"mask of example {i} is empty: it must mark the object class")
            prepared = prepare_image(model, ex_img, cfg.fss_test_size.short, cfg.fss_test_size.max_size)
            images.append(prepared.tensor)
            masks.append(resize_mask_nearest(ex_mask, prepared.size))
        batch, pmask, _ = model.pad_batch(images)
        mask_batch = torch.cat([pad_mask(m, tuple(batch.shape[-2:]), model.device) for m in masks], 0)
        feats = model.extract_features(batch, pmask)
        return aggregate_shots(model.encode_mask(batch, mask_batch, feats))


__all__ = ["ImagePredictor", "ImageResult"]
