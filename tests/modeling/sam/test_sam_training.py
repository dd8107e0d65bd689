"""Proof 3: one training step changes only what should train; the trainable/frozen report."""

import pytest
import torch

from sam_test_utils import TINY_TEXT, small_config
from uniref.modeling.sam import (
    UniRefSAM,
    freeze_for_training,
    parameter_counts,
    sam_image_stage,
    sam_video_stage,
    trainable_parameter_report,
    uniref_sam_loss,
)

TRAINED_PARTS = {"image": ("sam.mask_decoder", "text_encoder", "resizer", "mask_encoder", "fusion"),
                 "video": ("sam.mask_decoder", "resizer", "mask_encoder", "fusion")}


def _part(name: str) -> str:
    head, rest = name.split(".", 1)
    return head + "." + rest.split(".", 1)[0] if head == "sam" else head


@pytest.mark.parametrize("stage", ["image", "video"])
def test_one_step_changes_only_trainable_parameters(stage):
    torch.manual_seed(0)
    model = UniRefSAM(small_config(img_size=128))  # 8x8 grid: the step itself is what is tested
    with torch.no_grad():  # past the zero-initialised adaLN, so the attention receives gradients too
        model.fusion.adaLN_modulation[1].weight.normal_(0, 0.05)
    freeze_for_training(model, stage)
    model.train()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {_part(n) for n in trainable} == set(TRAINED_PARTS[stage])
    assert all("mask_decoder" in n for n in trainable if n.startswith("sam."))

    images = torch.randn(2, 3, 128, 128)
    sizes = torch.tensor([[128, 100], [90, 128]])
    ref_masks = (torch.rand(2, 1, 128, 128) > 0.5).float()
    targets = (torch.rand(2, 1, 128, 128) > 0.5).float()
    ids = torch.randint(1, TINY_TEXT["vocab_size"], (2, 7))
    attn = torch.ones(2, 7, dtype=torch.long)
    emb = model.encode_image(images)
    assert not emb.requires_grad  # the frozen encoder builds no graph
    lang = model.encode_text(ids, attn)
    mask = model.encode_mask(images, ref_masks, emb, sizes)
    out = model.decode(emb, lang=lang, mask=mask)
    losses = uniref_sam_loss(out.pred_masks, targets)
    losses["loss"].backward()

    frozen_with_grad = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen_with_grad == []
    for part in TRAINED_PARTS[stage]:
        grads = [p.grad for n, p in model.named_parameters() if _part(n) == part and p.grad is not None]
        assert any(g.abs().sum() > 0 for g in grads), f"no gradient reaches {part}"

    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    optim.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    params = dict(model.named_parameters())
    changed_params = {k for k in changed if k in params}
    assert changed_params <= trainable
    assert {_part(k) for k in changed_params} == set(TRAINED_PARTS[stage])
    # Only the trained mask encoder's BatchNorm statistics move among the buffers.
    assert all(k.startswith("mask_encoder.") for k in changed - changed_params)


def test_report_counts_small_model():
    model = UniRefSAM(small_config())
    freeze_for_training(model, "video")
    counts = parameter_counts(model)
    assert counts["sam.image_encoder"][0] == 0 and counts["text_encoder"][0] == 0
    assert counts["sam.mask_decoder"][0] == counts["sam.mask_decoder"][1] == 4_058_340
    report = trainable_parameter_report(model)
    trainable = sum(t for t, _ in counts.values())
    total = sum(a for _, a in counts.values())
    assert f"trainable: {trainable:,} of {total:,}" in report
    assert "sam.image_encoder" in report and "fusion" in report


def test_report_vit_h_matches_spec(vit_h_meta, sam_manifest):
    # Trainable parts per spec section 12, counted from the official manifest.
    entries = [e for e in sam_manifest["entries"] if not e["is_buffer"]]
    decoder = sum(e["numel"] for e in entries if e["name"].startswith("model.sam.") and "mask_decoder" in e["name"])
    rest = sum(e["numel"] for e in entries if not e["name"].startswith(("model.sam.", "model.text_encoder.")))
    text = sum(e["numel"] for e in entries if e["name"].startswith("model.text_encoder."))
    total = sum(e["numel"] for e in entries)
    for stage, expected in (("image", decoder + rest + text), ("video", decoder + rest)):
        freeze_for_training(vit_h_meta, stage)
        report = trainable_parameter_report(vit_h_meta)
        assert f"trainable: {expected:,} of {total:,}" in report
    assert decoder + rest + text == 122_966_679 and decoder + rest == 13_484_439 and total == 759_998_947


def test_stage_configs():
    image, video = sam_image_stage(), sam_video_stage()
    assert (image.base_lr, image.max_iter, image.steps) == (2e-4, 90_000, (75_000,))
    assert [d[2] for d in image.datasets] == [1.0, 0.05]
    assert (video.base_lr, video.max_iter, video.freeze_text_encoder) == (1e-4, 90_000, True)
    assert image.weights == video.weights == ""
    with pytest.raises(ValueError):
        freeze_for_training(UniRefSAM(small_config(with_lang_ref=False)), "audio")
