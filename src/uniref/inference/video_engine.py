"""Per-frame video inference for VOS (masks) and RVOS (sentences), online and with constant memory.

Two engines produce the same label maps:

* ``fast`` runs the backbone once per frame and reuses it for every object and for the frame's new
  references; all objects go through fusion, transformer and heads as one batch; only the chosen query's
  mask is decoded.
* ``reference`` follows the official structure: a backbone pass for the references plus one full network
  pass per object, masks for every query. It is the parity and benchmark baseline.

State per object: the first reference (``init``) and the latest one (``prev``), as the official code keeps;
nothing else from past frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from uniref.inference.postprocess import merge_soft_masks, soft_mask_video
from uniref.inference.preprocess import pad_mask, prepare_image, resize_mask_nearest
from uniref.inference.results import FrameResult
from uniref.modeling.reference.features import ReferenceFeatures
from uniref.modeling.reference.templates import concat_references

ENGINES = ("fast", "reference")
RVOS_MODES = ("propagate", "per_frame")


@dataclass
class TrackedObject:
    """What is kept for one object between frames."""

    obj_id: int
    text: str | None = None
    lang: ReferenceFeatures | None = None  # batch 1
    init: ReferenceFeatures | None = None  # batch 1
    prev: ReferenceFeatures | None = None  # batch 1

    @property
    def is_text(self) -> bool:
        return self.text is not None


@dataclass
class _Frame:
    """The current frame, prepared once."""

    batch: Tensor  # [1, 3, Hp, Wp]
    pad: Tensor  # [1, Hp, Wp]
    sizes: Tensor  # [1, 2]
    size: tuple[int, int]
    original_size: tuple[int, int]
    features: object = None  # VisualFeatures, computed lazily (the reference engine recomputes)


@dataclass
class EngineOptions:
    engine: str = "fast"
    score_threshold: float = 0.3
    rvos_score_threshold: float = 0.3
    rvos_mode: str = "propagate"
    keep_probabilities: bool = False


@dataclass
class FrameTracker:
    """Online state of one video: the tracked objects and their references. Holds no frames."""

    model: object
    options: EngineOptions
    tokenizer: object = None
    objects: dict[int, TrackedObject] = field(default_factory=dict)
    frame_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ public
    def add_text(self, obj_id: int, text: str) -> None:
        _check_id(obj_id)
        if obj_id in self.objects and not self.objects[obj_id].is_text:
            raise ValueError(f"object {obj_id} already has a mask; use another id for a sentence")
        ids, att = self.tokenizer([text], self.model.device)
        self.objects[obj_id] = TrackedObject(obj_id, text=text, lang=self.model.encode_text(ids, att))

    @torch.inference_mode()
    def step(self, frame_idx: int, image: np.ndarray, new_masks: dict[int, np.ndarray] | None = None) -> FrameResult:
        """Process one frame.

        Args:
            frame_idx: index of the frame (for results and error messages).
            image: ``[H, W, 3]`` uint8 RGB.
            new_masks: ``{obj_id: [H, W] bool}`` objects that appear on this frame (or are re-annotated).
        """
        h0, w0 = image.shape[:2]
        if self.frame_size is None:
            self.frame_size = (h0, w0)
        elif self.frame_size != (h0, w0):
            raise ValueError(
                f"frame {frame_idx} is {h0}x{w0} but earlier frames are {self.frame_size[0]}x{self.frame_size[1]}"
            )
        new_masks = dict(new_masks or {})
        for obj_id, m in new_masks.items():
            _check_id(obj_id)
            if obj_id in self.objects and self.objects[obj_id].is_text:
                raise ValueError(f"object {obj_id} was given as a sentence; masks need another id")
            if m.shape[:2] != (h0, w0):
                raise ValueError(
                    f"mask of object {obj_id} at frame {frame_idx} is {m.shape[0]}x{m.shape[1]} "
                    f"but the frame is {h0}x{w0}"
                )
            if not m.any():
                raise ValueError(f"mask of object {obj_id} at frame {frame_idx} is empty")

        model = self.model
        size = model.config.video_test_size
        prepared = prepare_image(model, image, size.short, size.max_size)
        batch, pad, sizes = model.pad_batch([prepared.tensor])
        frame = _Frame(batch, pad, sizes, prepared.size, prepared.original_size)

        mask_ids = sorted(o for o in self.objects if not self.objects[o].is_text and o not in new_masks)
        text_ids = sorted(o for o in self.objects if self.objects[o].is_text)
        new_ids = sorted(new_masks)

        probs: dict[int, Tensor] = {}
        scores: dict[int, float] = {}
        binary: dict[int, Tensor] = {}

        if self.options.engine == "reference":
            # the official order: reference features, new templates, then every object's own full pass
            ref_feats = self._features(frame, fresh=True)
            for o in new_ids:
                self._set_init(o, self._templates(frame, ref_feats, [new_masks[o]], given=True)[0])
            for o in new_ids + mask_ids:  # the official loop also runs the objects that start here
                p, s = self._predict_vos(frame, [o], fresh_features=True)
                if o in mask_ids:
                    probs[o], scores[o] = p[0], s[0]
        else:
            if new_ids:
                refs = self._templates(frame, self._features(frame), [new_masks[o] for o in new_ids], given=True)
                for o, r in zip(new_ids, refs):
                    self._set_init(o, r)
            if mask_ids:
                p, s = self._predict_vos(frame, mask_ids, fresh_features=False)
                for i, o in enumerate(mask_ids):
                    probs[o], scores[o] = p[i], s[i]

        for o in new_ids:
            gt = torch.from_numpy(resize_mask_nearest(new_masks[o], frame.size).astype(np.float32)).to(model.device)
            probs[o] = _resize_bilinear(gt, frame.original_size)
            scores[o] = 1.0

        if text_ids:
            self._predict_text(frame, text_ids, probs, scores, binary)

        ids = sorted(probs)
        if ids:
            # RVOS objects enter the label map only where their own binary mask is on; in the Ref-DAVIS
            # per-frame mode (no binary masks) they compete by soft aggregation in id order (spec 9.5)
            stacked = torch.stack([probs[o] * binary[o] if o in binary else probs[o] for o in ids])
            label_map = merge_soft_masks(stacked, ids)
        else:
            label_map = torch.zeros(frame.original_size, dtype=torch.uint8, device=model.device)

        # previous-frame references of the mask objects tracked before this frame (spec 9.3, step 7)
        visible = [o for o in mask_ids if bool((label_map == o).any())]
        if visible:
            if self.options.engine == "reference":
                ref_feats = self._features(frame, fresh=True) if frame.features is None else frame.features
                for o in visible:
                    self.objects[o].prev = self._templates(frame, ref_feats, [(label_map == o)])[0]
            else:
                refs = self._templates(frame, self._features(frame), [(label_map == o) for o in visible])
                for o, r in zip(visible, refs):
                    self.objects[o].prev = r

        masks = []
        for o in ids:
            if o in binary:
                masks.append(binary[o])
            else:
                masks.append(label_map == o)
        masks_np = torch.stack(masks).cpu().numpy() if masks else np.zeros((0, h0, w0), bool)
        return FrameResult(
            frame_idx=frame_idx,
            obj_ids=ids,
            masks=masks_np,
            scores=np.array([scores[o] for o in ids], dtype=np.float32),
            label_map=label_map.cpu().numpy(),
            probabilities=torch.stack([probs[o] for o in ids]).float().cpu().numpy()
            if ids and self.options.keep_probabilities else None,
            texts={o: self.objects[o].text for o in ids if self.objects[o].is_text},
        )

    # ------------------------------------------------------------------ pieces
    def _features(self, frame: _Frame, fresh: bool = False):
        if fresh or frame.features is None:
            feats = self.model.extract_features(frame.batch, frame.pad)
            if frame.features is None:
                frame.features = feats
            return feats
        return frame.features

    def _set_init(self, obj_id: int, ref: ReferenceFeatures) -> None:
        obj = self.objects.get(obj_id) or TrackedObject(obj_id)
        obj.init = obj.prev = ref
        self.objects[obj_id] = obj

    def _templates(self, frame: _Frame, feats, masks: list, given: bool = False) -> list[ReferenceFeatures]:
        """Mask references of ``masks`` (at the original size) on the current frame, one per mask.

        Given masks are resized like the official data mapper does (PIL nearest); predicted masks like the
        official update rule does (torch nearest). The two differ on a few border pixels.
        """
        model = self.model
        padded = tuple(frame.batch.shape[-2:])
        tensors = []
        for m in masks:
            if given:
                m_in = torch.from_numpy(resize_mask_nearest(np.asarray(m, dtype=bool), frame.size))
            else:
                m_t = m if isinstance(m, Tensor) else torch.as_tensor(np.asarray(m))
                m_in = F.interpolate(m_t[None, None].float(), size=frame.size, mode="nearest")[0, 0]
            tensors.append(pad_mask(m_in, padded, model.device))
        n = len(tensors)
        if self.options.engine == "reference" or n == 1:
            return [model.encode_mask(frame.batch, t, feats) for t in tensors]
        refs = model.encode_mask(frame.batch.expand(n, -1, -1, -1), torch.cat(tensors, 0), feats.expand(n))
        return [refs.index_select([i]) for i in range(n)]

    def _predict_vos(self, frame: _Frame, obj_ids: list[int], fresh_features: bool):
        model = self.model
        stride = model.config.mask_stride_vos
        objs = [self.objects[o] for o in obj_ids]
        if fresh_features:  # reference engine: one object, its own backbone pass, every query decoded
            feats = model.extract_features(frame.batch, frame.pad)
            ref = concat_references(objs[0].init, objs[0].prev)
            out = model.decode(feats, frame.sizes, mask=ref, masks="all", mask_out_stride=stride)
            logits = out.pred_masks[0, out.top1[0], 0][None]
        else:
            n = len(objs)
            ref = concat_references(
                ReferenceFeatures.cat_batch([o.init for o in objs]), ReferenceFeatures.cat_batch([o.prev for o in objs])
            )
            # the frame's features once: fusion projects its visual tokens once for all objects
            out = model.decode(self._features(frame), frame.sizes.expand(n, -1), mask=ref, masks="top1",
                               mask_out_stride=stride)
            logits = out.pred_masks[:, 0, 0]
        top_scores = out.pred_logits.gather(1, out.top1.view(-1, 1, 1).expand(-1, 1, out.pred_logits.shape[-1]))
        scores = top_scores[:, 0].max(-1).values.sigmoid()
        probs = soft_mask_video(logits, frame.size, frame.original_size, stride)
        keep = (scores > self.options.score_threshold).to(probs.dtype)
        return probs * keep[:, None, None], scores.tolist()

    def _predict_text(self, frame: _Frame, text_ids, probs, scores, binary) -> None:
        model = self.model
        opts = self.options
        per_frame = opts.rvos_mode == "per_frame"
        groups: list[list[int]]
        if per_frame:
            groups = [text_ids]
        else:
            groups = [[o for o in text_ids if self.objects[o].init is None], [o for o in text_ids if self.objects[o].init is not None]]
        if opts.engine == "reference":
            groups = [[o] for g in groups for o in g]
        new_refs: list[tuple[int, Tensor]] = []
        for group in groups:
            if not group:
                continue
            objs = [self.objects[o] for o in group]
            n = len(objs)
            lang = ReferenceFeatures.cat_batch([o.lang for o in objs])
            mask_ref = None
            if not per_frame and objs[0].init is not None:
                mask_ref = concat_references(
                    ReferenceFeatures.cat_batch([o.init for o in objs]), ReferenceFeatures.cat_batch([o.prev for o in objs])
                )
            if opts.engine == "reference":
                feats = model.extract_features(frame.batch, frame.pad)
                out = model.decode(feats, frame.sizes, lang=lang, mask=mask_ref, masks="all", mask_out_stride=4)
                logits = out.pred_masks[0, out.top1[0], 0][None]
            else:
                out = model.decode(self._features(frame), frame.sizes.expand(n, -1), lang=lang,
                                   mask=mask_ref, masks="top1", mask_out_stride=4)
                logits = out.pred_masks[:, 0, 0]
            top = out.pred_logits.gather(1, out.top1.view(-1, 1, 1).expand(-1, 1, out.pred_logits.shape[-1]))
            sc = top[:, 0].max(-1).values.sigmoid()
            p = soft_mask_video(logits, frame.size, frame.original_size, 4)
            for i, o in enumerate(group):
                scores[o] = float(sc[i])
                if per_frame:
                    probs[o] = p[i]
                    continue
                confident = bool(sc[i] > opts.rvos_score_threshold)
                probs[o] = p[i] if confident else torch.zeros_like(p[i])
                binary[o] = probs[o] > model.config.mask_threshold
                if bool(binary[o].any()):
                    new_refs.append((o, binary[o]))
        if new_refs:
            # references from this frame's predicted masks: first one -> init and prev, later -> prev
            if opts.engine == "reference":
                for o, m in new_refs:
                    feats = model.extract_features(frame.batch, frame.pad)
                    self._update_text_ref(o, self._templates(frame, feats, [m])[0])
            else:
                refs = self._templates(frame, self._features(frame), [m for _, m in new_refs])
                for (o, _), r in zip(new_refs, refs):
                    self._update_text_ref(o, r)

    def _update_text_ref(self, obj_id: int, ref: ReferenceFeatures) -> None:
        obj = self.objects[obj_id]
        if obj.init is None:
            obj.init = ref
        obj.prev = ref


def _resize_bilinear(mask: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def _check_id(obj_id: int) -> None:
    if not isinstance(obj_id, (int, np.integer)) or not 1 <= int(obj_id) <= 255:
        raise ValueError(f"object ids must be integers in 1..255; got {obj_id!r}")
