"""One training forward pass: network, matching, masks of the matched queries, losses (spec 10.1-10.3).

:class:`TrainingModel` wraps :class:`~uniref.modeling.uniref.UniRef` and the criterion in an ``nn.Module`` whose
``forward(batch)`` returns the loss, so that ``DistributedDataParallel`` can wrap it (UniRef itself has no
``forward``). Per batch:

1. the target images and, for mask references, the reference images are padded together and go through the
   backbone in one call (the official video mapper batches the two frames of a clip the same way);
2. the expressions and/or the reference masks are encoded; the decoder runs without masks;
3. each decoder layer is matched with simOTA, the encoder proposals with the Hungarian matcher;
4. the dynamic mask head runs on the matched queries of every layer at once (one call per image), with the
   layer's input reference, at stride 4 (image tasks, RVOS) or at full resolution (VOS) — the pixel decoder
   runs once per iteration where the official code ran it once per layer (same values);
5. the criterion sums the weighted terms.

With ``loss_normalizer="global"`` each term is rescaled after an all-reduce of the matched-query counts (and of
the pixel counts of the bootstrapped term) so that the DDP gradient average equals the gradient of one process
holding the combined batch. The default ("local") is the official per-GPU normalisation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from uniref.modeling.text import language_reference
from uniref.modeling.uniref import UniRef, VisualFeatures
from uniref.training.criterion import LayerPredictions, LossOutput, SetCriterion, Target
from uniref.training.samples import TrainBatch

__all__ = ["TrainingModel", "StepOutput", "apply_freezing", "checkpoint_text_encoder", "enable_gradient_checkpointing",
           "split_features", "make_targets", "set_train_mode"]


@dataclass
class StepOutput:
    """The loss to back-propagate and the (local, unscaled) terms for logging."""

    loss: Tensor
    terms: dict[str, float]
    num_matched: int


def split_features(feats: VisualFeatures, n: int) -> tuple[VisualFeatures, VisualFeatures]:
    """Split a batch of features into the first ``n`` entries and the rest."""
    def part(sl: slice) -> VisualFeatures:
        return VisualFeatures([t[sl] for t in feats.srcs], [t[sl] for t in feats.masks], [t[sl] for t in feats.pos],
                              feats.res2[sl], feats.image_mask[sl])
    return part(slice(0, n)), part(slice(n, None))


def make_targets(masks: list[Tensor], padded: tuple[int, int], labels: list[Tensor] | None = None) -> list[Target]:
    """Targets from per-image ``[n, H, W]`` bool masks: boxes from the masks, masks zero-padded to ``padded``;
    class ids from ``labels`` (per image ``[n]``), else all 0 (class-agnostic)."""
    targets = []
    hp, wp = padded
    for i, m in enumerate(masks):
        n, h, w = m.shape
        # pixel-edge box (x0, y0, x1, y1) of each mask, as a box annotation would give; empty masks get zeros
        rows, cols = m.any(2).to(torch.uint8), m.any(1).to(torch.uint8)
        y0, y1 = rows.argmax(1), h - rows.flip(1).argmax(1)
        x0, x1 = cols.argmax(1), w - cols.flip(1).argmax(1)
        boxes = torch.stack([x0, y0, x1, y1], 1).float() * rows.any(1, keepdim=True)
        pad = m.new_zeros((n, hp, wp))
        pad[:, :h, :w] = m
        ids = torch.zeros(n, dtype=torch.int64, device=m.device) if labels is None else labels[i].to(m.device)
        targets.append(Target.from_pixel_boxes(ids, boxes, pad, (h, w)))
    return targets


class TrainingModel(nn.Module):
    """UniRef + criterion as one module whose forward computes the loss of a :class:`TrainBatch`.

    Args:
        model: the network (its parameters are this module's ``model.*``).
        criterion: the loss.
        loss_normalizer: "local" or "global" (see the module docstring).
        frozen_text_encoder: run BERT without gradients.
    """

    def __init__(self, model: UniRef, criterion: SetCriterion, *, loss_normalizer: str = "local",
                 frozen_text_encoder: bool = False):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.loss_normalizer = loss_normalizer
        self.frozen_text_encoder = frozen_text_encoder

    def forward(self, batch: TrainBatch) -> StepOutput:  # noqa: C901 - one linear recipe
        model = self.model
        b = len(batch)
        images = [model.normalize(img[None])[0] for img in batch.images]
        refs = [] if batch.ref_images is None else [model.normalize(img[None])[0] for img in batch.ref_images]
        padded, pad_mask, sizes = model.pad_batch(images + refs)
        feats_all = model.extract_features(padded, pad_mask)
        feats, ref_feats = split_features(feats_all, b)
        image_sizes = sizes[:b]

        lang = None
        if batch.input_ids is not None:
            if self.frozen_text_encoder:
                # BERT without a graph; the resizer after it still trains
                lang = language_reference(_NoGrad(model.text_encoder), model.resizer, batch.input_ids,
                                          batch.attention_mask)
            else:
                lang = model.encode_text(batch.input_ids, batch.attention_mask)
        mask_ref = None
        if batch.ref_images is not None:
            ref_masks = torch.zeros(b, 1, *padded.shape[-2:], dtype=padded.dtype, device=padded.device)
            for i, m in enumerate(batch.ref_masks):
                ref_masks[i, 0, : m.shape[0], : m.shape[1]] = m.to(padded.dtype)
            mask_ref = model.encode_mask(padded[b:], ref_masks, ref_feats)

        out = model.decode(feats, image_sizes, lang=lang, mask=mask_ref, masks=None)
        if batch.labels is not None:
            top = max((int(t.max()) for t in batch.labels if t.numel()), default=-1)
            if top >= model.config.num_classes:
                raise ValueError(f"dataset {batch.dataset}: class id {top} but the model has "
                                 f"num_classes={model.config.num_classes}")
        targets = make_targets(batch.masks, tuple(padded.shape[-2:]), batch.labels)
        out_stride = model.config.mask_stride_vos if batch.task == "vos" else model.config.mask_stride

        num_layers = out.layer_logits.shape[0]
        # matching and losses in float32, also under bf16 autocast (the casts keep the graph)
        layers = [LayerPredictions(out.layer_logits[l].float(), out.layer_boxes[l].float()) for l in range(num_layers)]
        t = out.transformer
        encoder = LayerPredictions(t.enc_outputs_class.float(), t.enc_outputs_coord_unact.float().sigmoid())
        with torch.autocast(device_type=padded.device.type, enabled=False):
            matches = [self.criterion.match(layer, targets) for layer in layers]
            encoder_matches = self.criterion.match_encoder(encoder, targets)
        self._attach_masks(out, layers, matches, image_sizes, out_stride)
        losses = self.criterion(layers, targets, matches, encoder=encoder, encoder_matches=encoder_matches)

        counts = {("" if l == num_layers - 1 else f"_{l}"): sum(m.num_matched for m in matches[l])
                  for l in range(num_layers)}
        counts["_enc"] = sum(m.num_matched for m in encoder_matches)
        pixels = 0
        if layers[-1].masks is not None and layers[-1].masks:
            h, w = layers[-1].masks[0].shape[-2:]
            pixels = int(h * w * self.criterion.mask_cls_top_fraction)
        loss = self._total(losses, counts, pixels)
        names = list(losses.weighted)
        values = torch.stack([losses.weighted[k].detach().float() for k in names]).cpu().tolist()
        terms = dict(zip(names, values))
        return StepOutput(loss, terms, counts[""])

    def _attach_masks(self, out, layers, matches, image_sizes: Tensor, out_stride: int) -> None:
        """Mask logits of every layer's matched queries, one dynamic-head call per image."""
        model = self.model
        hs, refs = out.transformer.hs, out.layer_references
        per_layer: list[list[Tensor]] = [[] for _ in layers]
        hp4, wp4 = out.mask_features.shape[-2:]
        size = (hp4 * 4 // out_stride, wp4 * 4 // out_stride)
        for b in range(out.mask_features.shape[0]):
            idx = [matches[l][b].pred_idx for l in range(len(layers))]
            counts = [int(i.numel()) for i in idx]
            if sum(counts) == 0:
                for l in range(len(layers)):
                    per_layer[l].append(out.mask_features.new_zeros((0, *size)))
                continue
            q = torch.cat([hs[l, b, idx[l]] for l in range(len(layers))])
            r = torch.cat([refs[l, b, idx[l], :2] for l in range(len(layers))])
            logits = model.mask_logits(out.mask_features[b:b + 1], q[None], r[None], image_sizes[b:b + 1], out_stride)
            for l, chunk in enumerate(logits[0, :, 0].split(counts)):
                per_layer[l].append(chunk)
        for layer, masks in zip(layers, per_layer):
            layer.masks = masks

    def _total(self, losses: LossOutput, counts: dict[str, int], pixels: int) -> Tensor:
        if self.loss_normalizer == "local" or not (dist.is_available() and dist.is_initialized()):
            return losses.total
        world = dist.get_world_size()
        suffixes = list(counts)
        local = torch.tensor([float(max(counts[s], 1)) for s in suffixes]
                             + [float(counts[s] * pixels) for s in suffixes], dtype=torch.float64)
        summed = torch.tensor([float(counts[s]) for s in suffixes] + [float(counts[s] * pixels) for s in suffixes],
                              dtype=torch.float64)
        device = losses.total.device
        summed = summed.to(device)
        dist.all_reduce(summed)
        summed = summed.cpu()
        n = len(suffixes)
        scale_norm = {s: float(local[i] * world / max(float(summed[i]), 1.0)) for i, s in enumerate(suffixes)}
        scale_pix = {s: float(local[n + i] * world / max(float(summed[n + i]), 1.0)) for i, s in enumerate(suffixes)}
        total = None
        for name, value in losses.weighted.items():
            suffix = _suffix(name)
            scale = scale_pix[suffix] if name.startswith("loss_mask_cls") else scale_norm[suffix]
            total = value * scale if total is None else total + value * scale
        return total


def _suffix(name: str) -> str:
    tail = name.rsplit("_", 1)[-1]
    if tail == "enc":
        return "_enc"
    return f"_{tail}" if tail.isdigit() else ""


class _NoGrad:
    """Calls a module under ``torch.no_grad()``."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)


# ------------------------------------------------------------------------------------------ modes


def apply_freezing(model: UniRef, *, freeze_text_encoder: bool = False) -> None:
    """``requires_grad=False`` for what a stage does not train.

    The backbone's own freezing (ResNet ``freeze_at=2``: stem and res2; Swin frozen stages) is set when it is
    built. BERT's pooler is never used by UniRef, so it is frozen too (it would only receive weight decay and
    trip DDP's unused-parameter checks). ``freeze_text_encoder`` freezes all of BERT (the video stage); the
    resizer after it still trains.
    """
    if not model.config.with_lang_ref:
        return
    for p in model.text_encoder.pooler.parameters():
        p.requires_grad_(False)
    if freeze_text_encoder or model.config.text.freeze:
        for p in model.text_encoder.parameters():
            p.requires_grad_(False)


def set_train_mode(model: UniRef, *, frozen_text_encoder: bool = False, bn_eval: bool = False) -> None:
    """Training mode, except a frozen BERT (no dropout) and, with ``bn_eval``, the mask encoder's BatchNorm."""
    model.train()
    if frozen_text_encoder and model.config.with_lang_ref:
        model.text_encoder.eval()
    if bn_eval and model.config.with_mask_ref:
        for m in model.mask_encoder.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


# ------------------------------------------------------------------------------------------ checkpointing


def _checkpointed(forward, *args, **kwargs):
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def enable_gradient_checkpointing(model: UniRef) -> list[str]:
    """Recompute in the backward pass: backbone blocks (stages with trainable weights), encoder and decoder
    layers, BERT layers. Modules with BatchNorm in training mode (the mask encoder) are left alone, since a
    recomputation would update their running statistics twice. Returns the names of the wrapped modules.
    """
    wrapped = []
    candidates: list[tuple[str, nn.Module]] = []
    backbone = model.backbone
    for name, child in backbone.named_children():
        if isinstance(child, nn.Sequential):  # ResNet stages: one block at a time
            candidates += [(f"backbone.{name}.{i}", blk) for i, blk in enumerate(child)]
        elif isinstance(child, nn.ModuleList):  # Swin stages
            candidates += [(f"backbone.{name}.{i}", blk) for i, blk in enumerate(child)]
    candidates += [(f"transformer.encoder.layers.{i}", m) for i, m in enumerate(model.transformer.encoder.layers)]
    candidates += [(f"transformer.decoder.layers.{i}", m) for i, m in enumerate(model.transformer.decoder.layers)]
    for name, module in candidates:
        if not any(p.requires_grad for p in module.parameters()):
            continue  # frozen stages keep no activations anyway
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
            continue
        module.forward = functools.partial(_checkpointed, module.forward)
        wrapped.append(name)
    if checkpoint_text_encoder(getattr(model, "text_encoder", None)):
        wrapped.append("text_encoder")
    return wrapped


def checkpoint_text_encoder(text: nn.Module | None) -> bool:
    """Recompute the layers of a trainable BERT in the backward pass; False (nothing done) when it is absent or
    frozen (a frozen BERT keeps no activations)."""
    if text is None or not any(p.requires_grad for p in text.parameters()):
        return False
    text.config.use_cache = False  # caching is for decoding; it conflicts with recomputation
    kwargs = {"use_reentrant": False}
    if hasattr(text, "activation_checkpointing_enable"):  # transformers >= 5.x; the old name is deprecated
        text.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        text.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return True
