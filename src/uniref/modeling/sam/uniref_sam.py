"""UniRef-SAM: UniFusion plugged into Segment Anything (spec section 12).

The image embedding of SAM's (frozen) ViT is fused once with the language and/or mask reference by
the UniFusion block of UniRef++; the reference's pooled embedding becomes one extra sparse prompt
token; SAM's mask decoder (trained) predicts a single mask and its IoU, which is the score.

The module is stateless across calls and exposes the steps predictors and trainers compose:

* :meth:`UniRefSAM.prepare_images` — resize (longest side ``S``), normalise, pad to ``S x S``;
* :meth:`UniRefSAM.encode_image` — SAM's image embedding;
* :meth:`UniRefSAM.encode_text` / :meth:`UniRefSAM.encode_mask` — one-level reference dictionaries;
* :meth:`UniRefSAM.decode` — fusion, prompt and mask decoder;
* :meth:`UniRefSAM.forward` — ``encode_image`` then ``decode``.

Naming: ``B`` images (or objects, one entry per object), ``S`` the square input side (1024),
``g = S / 16`` the embedding grid side (64), ``C`` the prompt dimension (256), ``T`` text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniref.modeling.fusion import UniFusion
from uniref.modeling.reference.features import ReferenceFeatures
from uniref.modeling.reference.mask_encoder import SamMaskReferenceEncoder
from uniref.modeling.reference.templates import masked_mean
from uniref.modeling.sam.config import UniRefSamConfig, get_sam_config
from uniref.modeling.sam.padding import embedding_padding_mask, pad_to_square, resize_longest_side
from uniref.modeling.sam.sam_backbone import build_sam, decode_masks, reference_prompt
from uniref.modeling.text import FeatureResizer, build_text_encoder, language_reference

_BERT_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "hidden_act", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "layer_norm_eps", "pad_token_id",
)


@dataclass
class UniRefSamOutput:
    """Predictions of one :meth:`UniRefSAM.decode` call.

    Attributes:
        pred_masks: ``[B, 1, S, S]`` mask logits at the padded input resolution (low-res logits x4).
        low_res_masks: ``[B, 1, S/4, S/4]`` the mask decoder's logits (256x256 at 1024 px).
        scores: ``[B]`` SAM's IoU prediction of the mask (the confidence; not a probability).
        image_embeddings: ``[B, C, g, g]`` the fused embedding the decoder saw.
    """

    pred_masks: Tensor
    low_res_masks: Tensor
    scores: Tensor
    image_embeddings: Tensor


class UniRefSAM(nn.Module):
    """UniRef-SAM of one SAM size, built from a :class:`UniRefSamConfig`.

    Top-level parts and their official state-dict prefixes (see
    :data:`uniref.modeling.sam.checkpoint.SAM_OFFICIAL_PREFIXES`): ``sam`` (``model.sam``),
    ``text_encoder`` (``model.text_encoder``), ``resizer`` (``model.resizer``), ``mask_encoder``
    (``model.value_encoder``), ``fusion`` (``model.fusion_module``). ``pixel_mean``/``pixel_std`` are
    non-persistent buffers.
    """

    def __init__(self, config: UniRefSamConfig):
        super().__init__()
        config.validate()
        self.config = c = config
        self.sam = build_sam(
            c.encoder_config,
            img_size=c.img_size,
            prompt_dim=c.prompt_dim,
            mask_in_chans=c.mask_in_chans,
            decoder_depth=c.decoder_depth,
            decoder_mlp_dim=c.decoder_mlp_dim,
            decoder_num_heads=c.decoder_num_heads,
            num_multimask_outputs=c.num_multimask_outputs,
            pixel_mean=c.pixel_mean,
            pixel_std=c.pixel_std,
        )
        if c.with_lang_ref:
            self.text_encoder = build_text_encoder({k: getattr(c.text, k) for k in _BERT_FIELDS})
            self.resizer = FeatureResizer(c.text.hidden_size, c.prompt_dim)
        if c.with_mask_ref:
            self.mask_encoder = SamMaskReferenceEncoder(c.prompt_dim, c.prompt_dim)
        self.fusion = UniFusion(
            c.prompt_dim, c.fusion_heads, c.fusion_head_dim, c.fusion_dropout, bf16_attention=c.bf16_fusion_attention
        )
        self.register_buffer("pixel_mean", torch.tensor(c.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.pixel_std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ inputs
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        return self.config.img_size

    @property
    def embedding_size(self) -> int:
        return self.config.embedding_size

    def normalize(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB on the 0-255 scale (any dtype) -> normalised float."""
        return (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def prepare_images(self, images: list[Tensor], *, resize: bool = True) -> tuple[Tensor, Tensor]:
        """The SAM input of a list of ``[3, H_i, W_i]`` RGB images on the 0-255 scale.

        Each image is resized so its longest side is ``S`` (unless ``resize=False``, for images already
        resized), normalised, then zero-padded bottom/right to ``S x S`` (padding = the mean colour).

        Returns:
            ``(batch [B, 3, S, S], image_sizes [B, 2])`` with the (H, W) of each image inside the square.
        """
        out, sizes = [], []
        for img in images:
            x = img.to(self.device)
            if resize:
                x = resize_longest_side(x.float(), self.img_size)
            x = self.normalize(x[None])
            sizes.append(x.shape[-2:])
            out.append(pad_to_square(x, self.img_size))
        return torch.cat(out), torch.tensor([list(s) for s in sizes], device=self.device)

    def prepare_masks(self, masks: list[Tensor], image_sizes: Tensor) -> Tensor:
        """Reference masks ``[H_i, W_i]`` (any size) -> ``[B, 1, S, S]`` 0/1 float, zero at padding.

        Each mask is nearest-resized to its image's size inside the square, then zero-padded.
        """
        out = []
        for m, (h, w) in zip(masks, image_sizes.tolist()):
            x = m.to(self.device, torch.float32).view(1, 1, *m.shape[-2:])
            if tuple(x.shape[-2:]) != (h, w):
                x = F.interpolate(x, size=(h, w), mode="nearest")
            out.append(pad_to_square((x > 0.5).float(), self.img_size))
        return torch.cat(out)

    def grid_padding_mask(self, image_sizes: Tensor) -> Tensor:
        """``[B, g, g]`` bool, True on embedding cells that hold only padding (see :mod:`.padding`)."""
        return embedding_padding_mask(
            image_sizes,
            self.embedding_size,
            self.config.encoder_config.patch_size,
            official_padding_bug=self.config.official_padding_bug,
        )

    def predictor_adapter(self):
        """This model behind the interface of ``ImagePredictor`` / ``VideoPredictor`` (which call this hook
        when a model has it): see :class:`~uniref.modeling.sam.predictor_adapter.SamPredictorAdapter`."""
        from uniref.modeling.sam.predictor_adapter import SamPredictorAdapter

        return SamPredictorAdapter(self)

    # ------------------------------------------------------------------ encoders
    def encode_image(self, images: Tensor) -> Tensor:
        """SAM's image embedding: ``[B, 3, S, S]`` normalised, padded -> ``[B, C, g, g]``."""
        return self.sam.image_encoder(images)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> ReferenceFeatures:
        """``[B, T]`` token ids and attention mask -> a one-level language reference."""
        if not self.config.with_lang_ref:
            raise RuntimeError(f"config {self.config.name!r} has no text encoder (with_lang_ref=False)")
        return language_reference(self.text_encoder, self.resizer, input_ids, attention_mask)

    def encode_mask(
        self, images: Tensor, masks: Tensor, image_embeddings: Tensor, image_sizes: Tensor
    ) -> ReferenceFeatures:
        """A one-level mask reference per batch entry (official ``ValueEncoderSO_Sam`` path).

        Args:
            images: ``[B, 3, S, S]`` the normalised, padded reference images.
            masks: ``[B, 1, S, S]`` 0/1 float object masks, zero at padding.
            image_embeddings: ``[B, C, g, g]`` the reference images' SAM embeddings (un-fused).
            image_sizes: ``[B, 2]`` (H, W) of the reference images inside the square.
        Returns:
            ``refs`` = the reference embedding ``[B, g*g, C]`` (keys: image, not mask, features),
            ``values`` = the mask encoder output ``[B, g*g, C]``, ``padding_mask`` ``[B, g*g]`` and
            ``embeds`` = the mean of ``refs`` over non-padding cells ``[B, C]``.
        """
        if not self.config.with_mask_ref:
            raise RuntimeError(f"config {self.config.name!r} has no mask encoder (with_mask_ref=False)")
        values = self.mask_encoder(images, masks, image_embeddings)  # [B, C, g, g]
        refs = image_embeddings.flatten(2).transpose(1, 2)
        padding = self.grid_padding_mask(image_sizes).flatten(1)
        return ReferenceFeatures([refs], [values.flatten(2).transpose(1, 2)], [padding], [masked_mean(refs, padding)])

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        image_embeddings: Tensor,
        *,
        lang: ReferenceFeatures | None = None,
        mask: ReferenceFeatures | None = None,
        prompt_from: Literal["auto", "lang", "mask"] = "auto",
    ) -> UniRefSamOutput:
        """Fuse the references into the embedding and decode one mask per batch entry.

        Args:
            image_embeddings: ``[B, C, g, g]`` SAM embeddings of the query images (one per object).
            lang, mask: one-level references with batch ``B``; at least one is required.
            prompt_from: which pooled embedding becomes the sparse prompt token. ``"auto"`` uses the
                sentence embedding when a language reference is given (RIS, RVOS) and the mask
                reference's otherwise (FSS, VOS). Which one the official code uses when both are given
                is not settled by the spec; see the module README.
        """
        if lang is None and mask is None:
            raise ValueError("UniRef-SAM needs a language and/or a mask reference")
        fused = self.fusion([image_embeddings], lang=lang, mask=mask)[0]
        source = prompt_from if prompt_from != "auto" else ("lang" if lang is not None else "mask")
        ref = lang if source == "lang" else mask
        if ref is None:
            raise ValueError(f"prompt_from={prompt_from!r} but no {source} reference was given")
        token = ref.embeds[0]  # level 0: a SAM reference has one level
        sparse, dense = reference_prompt(self.sam.prompt_encoder, token)
        low_res, iou = decode_masks(
            self.sam.mask_decoder,
            fused,
            self.sam.prompt_encoder.get_dense_pe().to(fused.dtype),
            sparse,
            dense.to(fused.dtype),
            multimask_output=False,
        )
        pred = F.interpolate(low_res, scale_factor=4, mode="bilinear", align_corners=False)
        return UniRefSamOutput(pred, low_res, iou[:, 0], fused)

    def forward(
        self,
        images: Tensor,
        *,
        lang: ReferenceFeatures | None = None,
        mask: ReferenceFeatures | None = None,
        prompt_from: Literal["auto", "lang", "mask"] = "auto",
    ) -> UniRefSamOutput:
        """``[B, 3, S, S]`` normalised, padded query images -> :class:`UniRefSamOutput`."""
        return self.decode(self.encode_image(images), lang=lang, mask=mask, prompt_from=prompt_from)


def build_sam_model(
    name: str | UniRefSamConfig = "sam_vit_h",
    *,
    weights: str | None = None,
    sam_weights: str | None = None,
    text_weights: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **overrides,
) -> UniRefSAM:
    """Build a named UniRef-SAM (``sam_vit_b`` / ``sam_vit_l`` / ``sam_vit_h``), optionally with weights.

    Args:
        weights: an official UniRef-SAM checkpoint (or one of ours), loaded strictly.
        sam_weights: Meta's SAM checkpoint of the same size (used when ``weights`` is None), with
            ``text_weights`` an optional UniRef++ checkpoint for the text encoder and resizer.
        device, dtype: where and in which dtype the model lives (CPU float32 by default).
        overrides: config fields, e.g. ``img_size=256`` or ``text={"num_hidden_layers": 2}``.
    """
    from uniref.modeling.sam.checkpoint import load_sam_weights, load_uniref_sam_checkpoint

    config = name.replace(**overrides) if isinstance(name, UniRefSamConfig) else get_sam_config(name, **overrides)
    model = UniRefSAM(config)
    if weights is not None:
        load_uniref_sam_checkpoint(model, weights, strict=True)
    elif sam_weights is not None:
        load_sam_weights(model, sam_weights, uniref_checkpoint=text_weights, strict=True)
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model
