"""UniRef-SAM on training-engine batches: the loss of a ``TrainBatch`` per task, what receives gradients, and the
stage data the engine needs (dataset names checked against the engine's own UniRef++ stages)."""

from __future__ import annotations

import pytest
import torch

from sam_test_utils import TINY_TEXT, small_config
from uniref.modeling.sam import (
    SamTrainingModel,
    UniRefSAM,
    engine_stage_fields,
    freeze_for_training,
    sam_image_stage,
    sam_video_stage,
    uniref_sam_loss,
)
from uniref.training.samples import TrainBatch

S = 64  # a 4x4 embedding grid: what is tested is the plumbing


@pytest.fixture(scope="module")
def model() -> UniRefSAM:
    torch.manual_seed(0)
    m = UniRefSAM(small_config(img_size=S))
    with torch.no_grad():  # past the zero-initialised adaLN, so the fusion attention receives gradients too
        m.fusion.adaLN_modulation[1].weight.normal_(0, 0.05)
    return m


def _img(h: int, w: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8)


def _masks(n: int, h: int, w: int) -> torch.Tensor:
    m = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        m[i, i * 5 : i * 5 + h // 2, w // 4 : w // 2 + i * 3] = True
    return m


def _batch(task: str) -> TrainBatch:
    torch.manual_seed({"ris": 1, "fss": 2, "vos": 3, "rvos": 4}[task])
    images = [_img(40, 60), _img(90, 50)]
    masks = [_masks(1, 40, 60), _masks(2 if task == "fss" else 1, 90, 50)]
    ids = att = refs = ref_masks = None
    if task in ("ris", "rvos"):
        ids = torch.randint(1, TINY_TEXT["vocab_size"], (2, 6))
        att = torch.ones(2, 6, dtype=torch.long)
        att[1, 4:] = 0
    if task in ("fss", "vos", "rvos"):
        refs = [_img(30, 30), _img(70, 100)]
        ref_masks = [_masks(1, 30, 30)[0], _masks(1, 70, 100)[0]]
    return TrainBatch(f"synthetic-{task}", task, ["a", "b"], images, masks, ids, att, refs, ref_masks)


@pytest.mark.parametrize("task", ["ris", "fss", "vos", "rvos"])
@torch.no_grad()
def test_batch_loss_equals_the_model_calls(model, task):
    model.eval()  # no dropout: the two computations must agree
    batch = _batch(task)
    out = SamTrainingModel(model)(batch)
    assert out.num_matched == 2 and set(out.terms) == {"loss_mask", "loss_dice"}

    images, sizes = model.prepare_images(batch.images + (batch.ref_images or []))
    emb = model.encode_image(images)
    lang = model.encode_text(batch.input_ids, batch.attention_mask) if batch.input_ids is not None else None
    mask = None
    if batch.ref_images is not None:
        mask = model.encode_mask(images[2:], model.prepare_masks(batch.ref_masks, sizes[2:]), emb[2:], sizes[2:])
    pred = model.decode(emb[:2], lang=lang, mask=mask).pred_masks
    targets = model.prepare_masks([m.any(0) for m in batch.masks], sizes[:2])  # FSS: the union of the masks
    assert targets.shape == (2, 1, S, S) and targets[1, 0, :, 36:].sum() == 0  # 90x50 -> 64x36, padded
    expected = uniref_sam_loss(pred, targets)
    torch.testing.assert_close(out.loss, expected["loss"], rtol=1e-5, atol=1e-6)
    assert out.terms["loss_mask"] == pytest.approx(float(expected["loss_mask"]), rel=1e-5)


@pytest.mark.parametrize("stage", ["image", "video"])
def test_backward_reaches_only_what_trains(stage):
    torch.manual_seed(0)
    model = UniRefSAM(small_config(img_size=S))
    with torch.no_grad():
        model.fusion.adaLN_modulation[1].weight.normal_(0, 0.05)
    freeze_for_training(model, stage)
    model.train()
    step = SamTrainingModel(model)
    out = step(_batch("rvos"))  # language and mask reference: every trained part is on the path
    out.loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert all(p.requires_grad for n, p in model.named_parameters() if n in with_grad)
    assert not any(n.startswith(("sam.image_encoder", "sam.prompt_encoder")) for n in with_grad)
    assert any(n.startswith("sam.mask_decoder") for n in with_grad)
    for part in ("resizer", "mask_encoder", "fusion"):
        assert any(n.startswith(part) for n in with_grad), part
    assert any(n.startswith("text_encoder") for n in with_grad) == (stage == "image")


def test_engine_stage_fields_match_the_paper_and_the_engine():
    from uniref.training.stages import get_stage

    image = engine_stage_fields(sam_image_stage())
    assert image["datasets"] == {"refcoco-mixed": 1.0, "fss1000": 0.05}
    assert image["optim"]["base_lr"] == 2e-4 and image["optim"]["steps"] == (75_000,) and image["max_iter"] == 90_000
    assert image["model"] == "sam_vit_h" and not image["freeze_text_encoder"]
    video = engine_stage_fields(sam_video_stage(), model="sam_vit_b")
    assert video["optim"]["base_lr"] == 1e-4 and video["max_iter"] == 90_000 and video["freeze_text_encoder"]
    assert video["model"] == "sam_vit_b"
    # "the same datasets as the video stage": every dataset of the engine's UniRef++ video stage, same ratios
    engine_video = {d.name: d.ratio for d in get_stage(video["base_stage"]).datasets}
    assert video["datasets"] == engine_video
    engine_image = {d.name: d.ratio for d in get_stage(image["base_stage"]).datasets}
    assert set(image["datasets"]) <= set(engine_image)
