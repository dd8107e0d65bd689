"""One training step per task: every trainable parameter a task uses gets a gradient, frozen ones none."""

from __future__ import annotations

import pytest
import torch

from training_fixtures import synthetic_batch, vocab_size, write_vocab
from uniref import build_model
from uniref.modeling.text.tokenizer import build_tokenizer
from uniref.training.criterion import SetCriterion
from uniref.training.step import TrainingModel, apply_freezing, make_targets, set_train_mode

# Top-level modules a task does not run (so their parameters legitimately get no gradient).
UNUSED = {
    "det": {"text_encoder", "resizer", "mask_encoder", "fusion"},
    "ris": {"mask_encoder"},
    "fss": {"text_encoder", "resizer"},
    "vos": {"text_encoder", "resizer"},
    "rvos": set(),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    vocab = write_vocab(tmp_path_factory.mktemp("vocab"))
    model = build_model("tiny", num_queries=10, text={"vocab_file": str(vocab), "vocab_size": vocab_size()})
    apply_freezing(model)
    # zero-initialised layers (adaLN of UniFusion, last box-MLP layer) block the gradient of what comes before
    # them at initialisation; a little noise lets the test see every path
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model, build_tokenizer(vocab, vocab_size=vocab_size())


def _run(model, tokenizer, task: str, *, frozen_text: bool = False, aux: bool = False):
    batch = synthetic_batch(task if task != "det" else "det", tokenizer, num=2)
    set_train_mode(model, frozen_text_encoder=frozen_text)
    step = TrainingModel(model, SetCriterion(mask_aux_loss=aux), frozen_text_encoder=frozen_text)
    model.zero_grad(set_to_none=True)
    out = step(batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    return out


@pytest.mark.parametrize("task", ["det", "ris", "fss", "vos", "rvos"])
def test_every_used_trainable_parameter_gets_a_gradient(setup, task):
    model, tokenizer = setup
    out = _run(model, tokenizer, task, aux=task in ("vos", "rvos"))
    assert out.num_matched > 0
    missing, leaked = [], []
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        if not p.requires_grad:
            if p.grad is not None:
                leaked.append(name)
        elif top in UNUSED[task]:
            if p.grad is not None and p.grad.abs().sum() > 0:
                leaked.append(name)
        elif p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0:
            missing.append(name)
    assert not missing, f"{task}: no gradient for {missing[:10]} ({len(missing)} in all)"
    assert not leaked, f"{task}: unexpected gradient for {leaked[:10]}"


def test_frozen_parameters(setup):
    model, tokenizer = setup
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # freeze_at=2: the stem and res2 of the backbone; and BERT's unused pooler
    assert any(n.startswith("backbone.stem.") for n in frozen)
    assert any(n.startswith("backbone.res2.") for n in frozen)
    assert not any(n.startswith("backbone.res3.") for n in frozen)
    assert {n for n in frozen if n.startswith("text_encoder.")} == {
        n for n, _ in model.named_parameters() if n.startswith("text_encoder.pooler.")}
    _run(model, tokenizer, "rvos")
    for name, p in model.named_parameters():
        if name in frozen:
            assert p.grad is None, name


def test_video_stage_freezes_the_text_encoder_but_trains_the_resizer(setup):
    model, tokenizer = setup
    apply_freezing(model, freeze_text_encoder=True)
    try:
        _run(model, tokenizer, "rvos", frozen_text=True, aux=True)
        assert not model.text_encoder.training
        for name, p in model.text_encoder.named_parameters():
            assert not p.requires_grad and p.grad is None, name
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.resizer.parameters())
        assert model.fusion.training and model.mask_encoder.training
    finally:
        for name, p in model.text_encoder.named_parameters():
            p.requires_grad_(not name.startswith("pooler."))


def test_targets_from_masks():
    m = torch.zeros(2, 20, 30, dtype=torch.bool)
    m[0, 2:6, 3:9] = True
    m[1, 10:20, 0:30] = True
    (t,) = make_targets([m], (32, 32))
    # boxes are cxcywh of the pixel-edge box, normalised by the unpadded (h, w) = (20, 30)
    torch.testing.assert_close(t.boxes[0], torch.tensor([6 / 30, 4 / 20, 6 / 30, 4 / 20]))
    torch.testing.assert_close(t.boxes[1], torch.tensor([0.5, 0.75, 1.0, 0.5]))
    assert t.masks.shape == (2, 32, 32) and t.masks[:, 20:].sum() == 0 and t.image_size == (20, 30)
    assert t.labels.tolist() == [0, 0]


def test_gradient_checkpointing_gives_the_same_gradients(setup, tmp_path):
    from uniref.training.step import enable_gradient_checkpointing

    model, tokenizer = setup
    torch.manual_seed(0)  # the same dropout masks in both runs (recomputation replays the RNG state)
    _run(model, tokenizer, "rvos")
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    clone = build_model(model.config)
    clone.load_state_dict(model.state_dict())
    apply_freezing(clone)
    wrapped = enable_gradient_checkpointing(clone)
    assert "transformer.encoder.layers.0" in wrapped and "backbone.res3.0" in wrapped and "text_encoder" in wrapped
    assert not any(n.startswith("backbone.res2") or n.startswith("mask_encoder") for n in wrapped)
    torch.manual_seed(0)
    _run(clone, tokenizer, "rvos")
    for name, p in clone.named_parameters():
        if name in reference:
            torch.testing.assert_close(p.grad, reference[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast_step_is_finite(setup):
    model, tokenizer = setup
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = _run(model, tokenizer, "vos", aux=True)
    assert out.loss.dtype == torch.float32 and all(v == v for v in out.terms.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_class_labels_beyond_the_model_are_refused(setup, tmp_path):
    model, tokenizer = setup
    batch = synthetic_batch("det", tokenizer, num=2)
    step = TrainingModel(model, SetCriterion())
    batch.labels = [torch.zeros(len(m), dtype=torch.int64) for m in batch.masks]
    assert torch.isfinite(step(batch).loss)  # class 0 fits the one-class model
    batch.labels[1] = torch.full((len(batch.masks[1]),), 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="class id 3 but the model has num_classes=1"):
        step(batch)


def test_multi_class_detection_trains_the_labelled_class(setup):
    torch.manual_seed(0)
    model = build_model("tiny", num_queries=10, num_classes=5, with_lang_ref=False, with_mask_ref=False)
    batch = synthetic_batch("det", None, num=2)
    batch.labels = [torch.full((len(m),), 4, dtype=torch.int64) for m in batch.masks]
    out = TrainingModel(model, SetCriterion())(batch)
    out.loss.backward()
    grad = model.class_embed[-2].weight.grad  # the last decoder layer's head: [5, C]
    # the labelled class gets a positive push, an absent one only the negatives' push
    assert grad.shape[0] == 5 and grad[4].abs().sum() > 0 and not torch.equal(grad[4], grad[0])
