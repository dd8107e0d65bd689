"""One training-mode step per task: every trainable parameter that the task uses receives a gradient."""

from __future__ import annotations

import pytest
import torch

from uniref import build_model
from uniref.modeling.reference.templates import concat_references


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("tiny")
    # The official init leaves several tensors constant (zero adaLN modulation, zero sampling offsets and
    # attention weights, zero last box layer), which makes gradients upstream of them exactly zero at step 0.
    # Perturb every constant tensor, as the reference data did, so "receives a gradient" means non-zero.
    with torch.no_grad():
        for p in m.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                p.add_(0.02 * torch.randn_like(p))
    return m.train()


def _inputs(model, n=1, size=(64, 96)):
    g = torch.Generator().manual_seed(1)
    imgs = [model.normalize(torch.rand(1, 3, *size, generator=g) * 255)[0] for _ in range(n)]
    return model.pad_batch(imgs)


def _loss(model, out, stride):
    total = out.layer_logits.sum() + out.layer_boxes.sum()
    total = total + out.transformer.enc_outputs_class.sum()
    coords = out.transformer.enc_outputs_coord_unact
    total = total + coords[torch.isfinite(coords)].sum()
    sizes = torch.tensor([[64, 96]])
    for layer in range(out.layer_logits.shape[0]):
        hs = out.transformer.hs[layer][:, :2]
        refs = out.layer_references[layer][:, :2, :2]
        total = total + model.mask_logits(out.mask_features, hs, refs, sizes, stride).sigmoid().sum()
    return total


def _tokens(model):
    ids = torch.zeros(1, 77, dtype=torch.long)
    ids[0, :5] = torch.tensor([101, 1996, 3899, 2187, 102])
    return ids, (ids != 0).long()


@pytest.mark.parametrize("task", ["ris", "fss", "vos", "rvos"])
def test_every_used_parameter_gets_a_gradient(model, task):
    model.zero_grad(set_to_none=True)
    batch, pad, sizes = _inputs(model)
    feats = model.extract_features(batch, pad)
    lang = mask = None
    if task in ("ris", "rvos"):
        lang = model.encode_text(*_tokens(model))
    if task in ("fss", "vos", "rvos"):
        ref_batch, ref_pad, _ = _inputs(model)
        ref_feats = model.extract_features(ref_batch, ref_pad)
        ref_mask = torch.zeros(1, 1, *ref_batch.shape[-2:])
        ref_mask[..., 10:40, 20:60] = 1
        mask = model.encode_mask(ref_batch, ref_mask, ref_feats)
        if task in ("vos", "rvos"):
            mask = concat_references(mask, mask)
    stride = 1 if task == "vos" else 4
    out = model.decode(feats, sizes, lang=lang, mask=mask, masks=None)
    _loss(model, out, stride).backward()

    unused = set()
    if lang is None:
        unused |= {"text_encoder.", "resizer."}
    if mask is None:
        unused |= {"mask_encoder."}
    unused |= {"text_encoder.pooler."}  # the BERT pooler is in the checkpoint but never used
    missing = []
    for name, p in model.named_parameters():
        if not p.requires_grad or any(name.startswith(u) for u in unused):
            continue
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0:
            missing.append(name)
    assert not missing, f"{len(missing)} parameters without gradient, e.g. {missing[:5]}"
    # frozen: detectron2 freeze_at=2 -> the stem and res2 never train
    frozen = [n for n, p in model.named_parameters() if n.startswith(("backbone.stem", "backbone.res2"))]
    assert frozen and all(not dict(model.named_parameters())[n].requires_grad for n in frozen)
