"""Replay of the official full-model runs recorded in ``full-*.safetensors``.

Each recorded run lists its calls in ``meta.calls`` (backbone passes, template builds, model calls, in the
order the official code made them). :func:`replay` feeds our model the same preprocessed inputs in the
same order and returns our outputs under the recorded names, so a test can compare them one by one.
Files without weights or inputs (the ``-fp32attn`` variant) borrow them from ``full-tiny-public``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from reference_data import reference_dir
from uniref.checkpoint import from_official_state_dict
from uniref.configs.official import config_from_official
from uniref.modeling.reference.templates import aggregate_shots, concat_references
from uniref.modeling.uniref import UniRef

TASKS = ("ris", "fss", "vos", "rvos")


@dataclass
class FullRun:
    name: str
    meta: dict
    tensors: dict[str, torch.Tensor]  # outputs.* of this file, inputs.* / weights.* possibly borrowed
    weights: dict[str, torch.Tensor] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.tensors

    def get(self, name: str) -> torch.Tensor:
        return self.tensors[name]


def full_runs() -> list[Path]:
    return sorted(reference_dir().glob("full-*.safetensors"))


def load_run(path: Path) -> FullRun:
    meta = json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path))
    base_name = meta.get("weights_from", "full-tiny-public.safetensors")
    if not any(k.startswith("weights.") for k in tensors) or not any(k.startswith("inputs.") for k in tensors):
        # outputs-only variants reuse the weights, the inputs and the recorded template input masks
        base = load_file(str(path.parent / Path(base_name).name))
        own = derive_template_inputs(meta, tensors)
        for k, v in base.items():
            if k.startswith(("weights.", "inputs.")) or k.endswith(".input_mask"):
                tensors.setdefault(k, own.get(k, v))
    weights = {k[len("weights."):]: (v.float() if v.is_floating_point() else v)
               for k, v in tensors.items() if k.startswith("weights.")}
    return FullRun(path.stem, meta, tensors, weights)


def derive_template_inputs(meta: dict, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Template input masks of the mask-update calls, rebuilt from a run's own per-frame results.

    VOS: the frame's label map == object id; RVOS: the frame's soft mask > 0.5; both nearest-resized from the
    original size to the network input size and zero-padded (the official update rule, spec 9.3/9.4).
    Calls whose results are not recorded are left out.
    """
    out = {}
    for task in ("vos", "rvos"):
        sizes = tensors.get(f"inputs.{task}.images_normalized_image_sizes")
        for call in meta["meta"]["calls"].get(task, []):
            if call["fn"] != "forward_template" or "predicted" not in call.get("purpose", ""):
                continue
            f = call["frame_idx"]
            if task == "vos":
                lm = tensors.get(f"outputs.vos.frame{f}.label_map")
                m = None if lm is None else lm == call["object_id"]
            else:
                soft = tensors.get(f"outputs.rvos.frame{f}.soft_mask")
                m = None if soft is None else soft > 0.5
            if m is None or sizes is None:
                continue
            h, w = (int(v) for v in sizes[f])
            x = torch.nn.functional.interpolate(m[None, None].float(), size=(h, w), mode="nearest")[0, 0]
            hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
            padded = torch.zeros(1, 1, hp, wp, dtype=torch.uint8)
            padded[0, 0, :h, :w] = x.to(torch.uint8)
            out[f"outputs.{task}.template{call['index']}.input_mask"] = padded
    return out


def build_for_run(run: FullRun) -> UniRef:
    cfg = config_from_official(run.meta["config_overrides"], run.meta.get("tiny_bert_config"))
    cfg = cfg.replace(bf16_fusion_attention=not run.meta.get("fp32_attention_variant", False))
    model = UniRef(cfg).eval()
    state, problems = from_official_state_dict(run.weights)
    assert not problems, problems
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    assert not missing and not unexpected, (missing, unexpected)
    return model


def _normalized(model: UniRef, images_u8: torch.Tensor) -> list[torch.Tensor]:
    """``[T, 3, H, W]`` uint8 -> list of normalised ``[3, H, W]``."""
    return list(model.normalize(images_u8.float()))


@torch.no_grad()
def replay(model: UniRef, run: FullRun, task: str) -> dict[str, torch.Tensor]:
    """Our outputs for every recorded call of ``task``, under the recorded names (``outputs.<task>.call<i>.*``)."""
    calls = run.meta["meta"]["calls"][task]
    t = run.tensors
    out: dict[str, torch.Tensor] = {}
    lang = None
    if task in ("ris", "rvos"):
        lang = model.encode_text(t[f"inputs.{task}.input_ids"], t[f"inputs.{task}.attention_mask"])
        out[f"outputs.{task}.lang.refs"] = lang.refs[0]
        out[f"outputs.{task}.lang.masks"] = lang.padding_mask[0]
        out[f"outputs.{task}.lang.ref_embeds"] = lang.embeds[0]

    if task == "ris":
        frames = [t["inputs.ris.images_normalized"][0]]
    elif task == "fss":
        frames = _normalized(model, t["inputs.fss.query_preprocessed"][None])
        support = _normalized(model, t["inputs.fss.support_preprocessed"][None])
    else:
        frames = _normalized(model, t[f"inputs.{task}.frames_preprocessed"])

    features = {}
    ref_feats = None
    ref_batch = None
    init: dict = {}
    prev: dict = {}
    fss_ref = None
    for call in calls:
        fn, idx = call["fn"], call["index"]
        frame = call.get("frame_idx", 0)
        obj = call.get("object_id", 0)
        if fn == "forward_ref_backbone":
            imgs = support if task == "fss" else [frames[frame]]
            batch, pmask, _ = model.pad_batch(imgs)
            ref_batch = batch
            ref_feats = model.extract_features(batch, pmask)
            for lvl, (s, m) in enumerate(zip(ref_feats.srcs, ref_feats.masks)):
                out[f"outputs.{task}.ref_backbone{idx}.srcs.{lvl}"] = s
                out[f"outputs.{task}.ref_backbone{idx}.masks.{lvl}"] = m
            if task != "fss":
                features[frame] = ref_feats
        elif fn == "forward_template":
            mask = t[f"outputs.{task}.template{idx}.input_mask"].float()
            ref = model.encode_mask(ref_batch, mask, ref_feats)
            for lvl in range(len(ref.refs)):
                out[f"outputs.{task}.template{idx}.ref_embeds.{lvl}"] = ref.embeds[lvl]
                out[f"outputs.{task}.template{idx}.masks.{lvl}"] = ref.padding_mask[lvl]
                out[f"outputs.{task}.template{idx}.ref_values.{lvl}"] = ref.values[lvl]
            if call.get("aggregate"):
                fss_ref = aggregate_shots(ref)
            elif obj not in init or "init" in call.get("purpose", ""):
                init[obj] = prev[obj] = ref
            else:
                prev[obj] = ref
        elif fn == "detr.coco_inference":
            if frame not in features:
                batch, pmask, _ = model.pad_batch([frames[frame]])
                features[frame] = model.extract_features(batch, pmask)
            feats = features[frame]
            sizes = torch.tensor([list(frames[frame].shape[-2:])])
            mref = None
            if call.get("with_mask"):
                mref = fss_ref if task == "fss" else concat_references(init[obj], prev[obj])
            captured: list = []
            hook = model.fusion.register_forward_hook(lambda _m, _a, o: captured.append(o))
            try:
                res = model.decode(
                    feats, sizes, lang=lang if call.get("with_lang") else None, mask=mref, masks="all",
                    mask_out_stride=1 if task == "vos" else 4,
                )
            finally:
                hook.remove()
            p = f"outputs.{task}.call{idx}."
            for lvl, s in enumerate(feats.srcs):
                out[p + f"fusion.srcs_in.{lvl}"] = s
                if captured:
                    out[p + f"fusion.srcs_out.{lvl}"] = captured[0][lvl]
            out[p + "pred_logits"] = res.pred_logits
            out[p + "pred_boxes"] = res.pred_boxes
            out[p + "reference_points"] = res.reference_points
            out[p + "pred_masks"] = res.pred_masks
            out[p + "top1_query"] = res.top1
            tr = res.transformer
            out[p + "transformer.hs"] = tr.hs
            out[p + "transformer.init_reference"] = tr.init_reference
            out[p + "transformer.inter_references"] = tr.inter_references
            out[p + "transformer.enc_outputs_class"] = tr.enc_outputs_class
            out[p + "transformer.enc_outputs_coord_unact"] = tr.enc_outputs_coord_unact
            # top-1 only decoding must equal the slice of the all-queries decoding
            top = model.decode(
                feats, sizes, lang=lang if call.get("with_lang") else None, mask=mref, masks="top1",
                mask_out_stride=1 if task == "vos" else 4,
            )
            out[p + "pred_masks_top1"] = top.pred_masks
        else:
            raise AssertionError(f"unknown recorded call {fn}")
    return out
