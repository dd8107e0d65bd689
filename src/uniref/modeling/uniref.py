"""The UniRef++ meta-architecture: one network, four reference kinds.

The module is stateless across calls. It exposes the steps the predictors and the trainer compose:

* :meth:`UniRef.extract_features` — backbone + input projection + position encoding of a padded batch
  (the same features serve as the query image and, for mask references, as the reference image);
* :meth:`UniRef.encode_text` / :meth:`UniRef.encode_mask` — reference dictionaries;
* :meth:`UniRef.decode` — UniFusion, the deformable transformer, the heads and the dynamic masks.

Naming: ``B`` images (or objects, when one frame is expanded per object), ``Q`` queries, ``L`` decoder
layers, ``Hp×Wp`` the padded input size, ``C = d_model``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniref.configs import ModelConfig
from uniref.layers.position_encoding import PositionEmbeddingSine
from uniref.modeling.backbones import build_backbone
from uniref.modeling.fusion import UniFusion
from uniref.modeling.heads.dynamic_mask_head import build_controller, dynamic_mask_logits
from uniref.modeling.heads.pixel_decoder import PixelDecoder
from uniref.modeling.input_projection import build_input_proj, project_features
from uniref.modeling.reference.features import ReferenceFeatures
from uniref.modeling.reference.mask_encoder import MaskReferenceEncoder
from uniref.modeling.reference.templates import mask_reference
from uniref.modeling.text import FeatureResizer, build_text_encoder, language_reference
from uniref.modeling.transformer import DeformableTransformer, TransformerOutput
from uniref.modeling.transformer.heads import build_detection_heads, predict_per_layer


@dataclass
class VisualFeatures:
    """Projected multi-scale features of a padded batch.

    Attributes:
        srcs: per level ``[B, C, h_l, w_l]`` input-projection outputs (strides 8, 16, 32, 64), before fusion.
        masks: per level ``[B, h_l, w_l]`` bool, True at padding.
        pos: per level ``[B, C, h_l, w_l]`` sine position embeddings.
        res2: ``[B, C2, Hp/4, Wp/4]`` stride-4 backbone feature for the mask branch.
        image_mask: ``[B, Hp, Wp]`` bool padding mask of the input.
    """

    srcs: list[Tensor]
    masks: list[Tensor]
    pos: list[Tensor]
    res2: Tensor
    image_mask: Tensor

    def expand(self, n: int) -> "VisualFeatures":
        """Repeat a single image ``n`` times along the batch (one entry per tracked object), without copies."""
        if self.res2.shape[0] != 1:
            raise ValueError("expand() needs a batch of one image")
        ex = lambda t: t.expand(n, *t.shape[1:])  # noqa: E731
        return VisualFeatures(
            [ex(t) for t in self.srcs], [ex(t) for t in self.masks], [ex(t) for t in self.pos], ex(self.res2),
            ex(self.image_mask),
        )

    def index_select(self, index: Tensor) -> "VisualFeatures":
        sel = lambda t: t.index_select(0, index)  # noqa: E731
        return VisualFeatures(
            [sel(t) for t in self.srcs], [sel(t) for t in self.masks], [sel(t) for t in self.pos], sel(self.res2),
            sel(self.image_mask),
        )


@dataclass
class UniRefOutput:
    """Predictions of one :meth:`UniRef.decode` call.

    Attributes:
        pred_logits: ``[B, Q, K]`` class logits of the last decoder layer.
        pred_boxes: ``[B, Q, 4]`` cxcywh in [0, 1] of the unpadded image.
        reference_points: ``[B, Q, 2]`` input reference centres of the last layer (drive the mask head).
        top1: ``[B]`` index of the highest-scoring query.
        pred_masks: ``[B, M, 1, h, w]`` mask logits: ``M = Q`` (all queries) or 1 (the top-1 query only),
            at stride 4 or at the full padded resolution; None when masks were not asked for.
        mask_features: ``[B, mask_dim, Hp/4, Wp/4]`` pixel-decoder output (reused by training).
        transformer: the raw transformer outputs (all layers).
        layer_logits, layer_boxes, layer_references: ``[L, B, Q, ·]`` per decoder layer (deep supervision).
    """

    pred_logits: Tensor
    pred_boxes: Tensor
    reference_points: Tensor
    top1: Tensor
    pred_masks: Tensor | None
    mask_features: Tensor
    transformer: TransformerOutput
    layer_logits: Tensor
    layer_boxes: Tensor
    layer_references: Tensor


class UniRef(nn.Module):
    """UniRef++ (R50, Swin-L or a reduced config), built from a :class:`ModelConfig`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        backbone_kwargs: dict = {} if c.backbone_freeze_at is None else {"freeze_at": c.backbone_freeze_at}
        if c.backbone_norm != "FrozenBN":
            backbone_kwargs["norm"] = c.backbone_norm
        self.backbone = build_backbone(c.backbone, width=c.backbone_width, **backbone_kwargs)
        in_channels = [self.backbone.out_channels[k] for k in ("res3", "res4", "res5")]
        self.input_proj = build_input_proj(in_channels, c.d_model, c.num_feature_levels)
        self.position_embedding = PositionEmbeddingSine(c.d_model // 2, normalize=True)
        self.transformer = DeformableTransformer(
            d_model=c.d_model,
            nhead=c.nheads,
            num_encoder_layers=c.enc_layers,
            num_decoder_layers=c.dec_layers,
            dim_feedforward=c.dim_feedforward,
            dropout=c.dropout,
            num_feature_levels=c.num_feature_levels,
            dec_n_points=c.dec_n_points,
            enc_n_points=c.enc_n_points,
            two_stage_num_proposals=c.num_queries,
        )
        self.class_embed, self.bbox_embed = build_detection_heads(c.d_model, c.num_classes, c.dec_layers)
        self.query_embed = nn.Embedding(c.num_queries, c.d_model)
        self.controller = build_controller(c.d_model)
        self.pixel_decoder = PixelDecoder(c.d_model, self.backbone.out_channels["res2"], c.mask_dim)
        self.fusion = UniFusion(
            c.d_model, c.fusion_heads, c.fusion_head_dim, c.fusion_dropout, bf16_attention=c.bf16_fusion_attention,
            gate_init=c.fusion_gate_init,
        )
        if c.with_lang_ref:
            self.text_encoder = build_text_encoder(c.text.bert_config())
            self.resizer = FeatureResizer(c.text.hidden_size, c.d_model)
        if c.with_mask_ref:
            # values enter UniFusion beside the d_model-wide image features, so both widths are d_model
            trunk = {} if c.mask_encoder_widths is None else {"trunk_widths": c.mask_encoder_widths}
            self.mask_encoder = MaskReferenceEncoder(c.d_model, c.d_model, **trunk)
        self.register_buffer("pixel_mean", torch.tensor(c.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.pixel_std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ inputs
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB on the 0-255 scale (any dtype) -> normalised float."""
        return (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def pad_batch(self, images: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Zero-pad normalised ``[3, H_i, W_i]`` images to a common multiple of 32.

        Returns ``(batch [B, 3, Hp, Wp], padding_mask [B, Hp, Wp] True at padding, image_sizes [B, 2] (H, W))``.
        """
        div = self.config.size_divisibility
        hp = max(int(t.shape[-2]) for t in images)
        wp = max(int(t.shape[-1]) for t in images)
        hp, wp = (hp + div - 1) // div * div, (wp + div - 1) // div * div
        batch = images[0].new_zeros((len(images), 3, hp, wp))
        mask = torch.ones((len(images), hp, wp), dtype=torch.bool, device=batch.device)
        for i, t in enumerate(images):
            h, w = t.shape[-2:]
            batch[i, :, :h, :w] = t
            mask[i, :h, :w] = False
        sizes = torch.tensor([[int(t.shape[-2]), int(t.shape[-1])] for t in images], device=batch.device)
        return batch, mask, sizes

    # ------------------------------------------------------------------ encoders
    def extract_features(self, images: Tensor, padding_mask: Tensor) -> VisualFeatures:
        """Backbone, input projection and position encoding.

        Args:
            images: ``[B, 3, Hp, Wp]`` normalised, zero-padded.
            padding_mask: ``[B, Hp, Wp]`` bool, True at padding.
        """
        feats = self.backbone(images)
        srcs, masks, pos = project_features(self.input_proj, feats, padding_mask, self.position_embedding)
        return VisualFeatures(srcs, masks, pos, feats["res2"], padding_mask)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> ReferenceFeatures:
        """``[B, T]`` token ids and attention mask -> a one-level language reference."""
        if not self.config.with_lang_ref:
            raise RuntimeError(f"config {self.config.name!r} has no text encoder (with_lang_ref=False)")
        return language_reference(self.text_encoder, self.resizer, input_ids, attention_mask)

    def encode_mask(self, images: Tensor, masks: Tensor, features: VisualFeatures) -> ReferenceFeatures:
        """A mask reference per batch entry.

        Args:
            images: ``[B, 3, Hp, Wp]`` the normalised, padded reference images.
            masks: ``[B, 1, Hp, Wp]`` float 0/1 object masks (zero at padding).
            features: the reference images' :class:`VisualFeatures` (same batch).
        """
        if not self.config.with_mask_ref:
            raise RuntimeError(f"config {self.config.name!r} has no mask encoder (with_mask_ref=False)")
        return mask_reference(self.mask_encoder, images, masks, features.srcs, features.masks)

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        features: VisualFeatures,
        image_sizes: Tensor,
        *,
        lang: ReferenceFeatures | None = None,
        mask: ReferenceFeatures | None = None,
        masks: str | None = "all",
        mask_out_stride: int = 4,
    ) -> UniRefOutput:
        """Fuse references, run the transformer and heads, and decode masks.

        Args:
            features: visual features, batch ``B``; or one frame (batch 1) decoded against ``B`` references
                (one per object): its visual tokens are then fused without ``B`` copies.
            image_sizes: ``[B, 2]`` unpadded (H, W).
            lang, mask: references with batch ``B``; either, both or neither (detection).
            masks: ``"all"`` (every query, the official inference), ``"top1"`` (only the best query) or None.
            mask_out_stride: 4 (stride-4 logits, RIS/FSS/RVOS) or 1 (full padded resolution, VOS).
        """
        srcs = features.srcs
        if lang is not None or mask is not None:
            srcs = self.fusion(srcs, lang=lang, mask=mask)
            if srcs[0].shape[0] != features.res2.shape[0]:  # one frame, a batch of references (objects)
                features = features.expand(srcs[0].shape[0])
        out = self.transformer(srcs, features.masks, features.pos, self.query_embed.weight, self.class_embed, self.bbox_embed)
        logits, boxes, refs = predict_per_layer(out, self.class_embed, self.bbox_embed)
        pred_logits, pred_boxes, ref_points = logits[-1], boxes[-1], refs[-1][..., :2]
        top1 = pred_logits.max(-1).values.argmax(-1)
        mask_features = self.pixel_decoder(out.memory, out.spatial_shapes, out.level_start_index, features.res2)
        pred_masks = None
        if masks is not None:
            hs = out.hs[-1]
            if masks == "top1":
                idx = top1.view(-1, 1)
                hs = hs.gather(1, idx[..., None].expand(-1, -1, hs.shape[-1]))
                ref_sel = ref_points.gather(1, idx[..., None].expand(-1, -1, 2))
            elif masks == "all":
                ref_sel = ref_points
            else:
                raise ValueError(f"masks must be 'all', 'top1' or None, not {masks!r}")
            pred_masks = self.mask_logits(mask_features, hs, ref_sel, image_sizes, mask_out_stride)
        return UniRefOutput(
            pred_logits, pred_boxes, ref_points, top1, pred_masks, mask_features, out, logits, boxes, refs
        )

    def mask_logits(
        self, mask_features: Tensor, hs: Tensor, reference_points: Tensor, image_sizes: Tensor, out_stride: int
    ) -> Tensor:
        """Dynamic-convolution masks for chosen queries.

        Args:
            mask_features: ``[B, mask_dim, Hp/4, Wp/4]``.
            hs: ``[B, N, C]`` decoder outputs of the chosen queries.
            reference_points: ``[B, N, 2]`` their normalised input reference centres.
            image_sizes: ``[B, 2]`` unpadded (H, W).
            out_stride: 4 or 1.
        Returns:
            ``[B, N, 1, h, w]`` mask logits.
        """
        params = self.controller(hs)
        return dynamic_mask_logits(
            mask_features, params, reference_points, image_sizes, mask_stride=self.config.mask_stride,
            out_stride=out_stride,
        )

    def forward(self, *args, **kwargs):  # pragma: no cover - explicit API only
        raise NotImplementedError(
            "UniRef has no single forward(); use ImagePredictor / VideoPredictor for inference, or "
            "extract_features / encode_text / encode_mask / decode to compose the steps yourself"
        )


def upsample_mask_logits(pred_masks: Tensor, factor: int = 4) -> Tensor:
    """Bilinear ×``factor`` upsampling of ``[B, M, 1, h, w]`` stride-4 logits (the RIS/FSS/RVOS post-processing)."""
    b, m = pred_masks.shape[:2]
    x = F.interpolate(pred_masks.flatten(0, 1), scale_factor=factor, mode="bilinear", align_corners=False)
    return x.view(b, m, 1, *x.shape[-2:])
