"""Parameter groups, schedule and clipping (spec 10.4)."""

from __future__ import annotations

import pytest
import torch

from training_fixtures import vocab_size, write_vocab
from uniref import build_model
from uniref.training.optim import (
    build_optimizer,
    build_param_groups,
    build_scheduler,
    clip_gradients,
    parameter_lr,
    warmup_multistep_factor,
)
from uniref.training.stages import OptimConfig
from uniref.training.step import apply_freezing


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    vocab = write_vocab(tmp_path_factory.mktemp("v"))
    m = build_model("tiny", num_queries=10, text={"vocab_file": str(vocab), "vocab_size": vocab_size()})
    apply_freezing(m)
    return m


def test_learning_rates_follow_the_official_names():
    cfg = OptimConfig(base_lr=2e-4, text_encoder_lr=1e-5)
    assert parameter_lr("backbone.res3.0.conv1.weight", cfg) == pytest.approx(2e-5)
    assert parameter_lr("transformer.encoder.layers.0.self_attn.sampling_offsets.weight", cfg) == pytest.approx(2e-5)
    assert parameter_lr("transformer.decoder.layers.1.cross_attn.sampling_offsets.bias", cfg) == pytest.approx(2e-5)
    assert parameter_lr("text_encoder.encoder.layer.0.attention.self.query.weight", cfg) == 1e-5
    assert parameter_lr("resizer.fc.weight", cfg) == 2e-4
    assert parameter_lr("mask_encoder.conv1.weight", cfg) == 2e-4  # the value encoder is not "backbone"
    assert parameter_lr("transformer.decoder.layers.0.cross_attn.attention_weights.weight", cfg) == 2e-4


def test_groups_cover_every_trainable_parameter_once(model):
    cfg = OptimConfig(base_lr=1e-4)
    groups = build_param_groups(model, cfg)
    names = [n for g in groups for n in g["names"]]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable) and len(set(names)) == len(names)
    assert all(g["weight_decay"] == 0.05 for g in groups)  # norms and biases included
    for g in groups:
        assert all(parameter_lr(n, cfg) == g["lr"] for n in g["names"])
    rules = {g["rule"]: g for g in groups}
    assert set(rules) == {"base", "backbone", "linear_proj", "text_encoder"}
    assert all(n.startswith("text_encoder.") for n in rules["text_encoder"]["names"])
    assert all(n.startswith("backbone.res") for n in rules["backbone"]["names"])
    assert all("sampling_offsets" in n for n in rules["linear_proj"]["names"])
    assert rules["backbone"]["lr"] == pytest.approx(1e-5) and rules["text_encoder"]["lr"] == 1e-5
    assert not any(n.startswith("text_encoder.pooler") for n in names)  # frozen: unused by UniRef
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.05


def test_warmup_multistep_schedule():
    cfg = OptimConfig(base_lr=1.0, warmup_iters=10, warmup_factor=0.1, steps=(20, 30), gamma=0.1)
    assert warmup_multistep_factor(0, cfg) == pytest.approx(0.1)
    assert warmup_multistep_factor(5, cfg) == pytest.approx(0.55)
    assert warmup_multistep_factor(10, cfg) == 1.0 and warmup_multistep_factor(19, cfg) == 1.0
    assert warmup_multistep_factor(20, cfg) == pytest.approx(0.1)
    assert warmup_multistep_factor(30, cfg) == pytest.approx(0.01)
    official = OptimConfig()  # factor 1.0 over 200 iterations: effectively no warm-up
    assert warmup_multistep_factor(0, official) == 1.0 and warmup_multistep_factor(75000, official) == pytest.approx(0.1)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p], "lr": 2.0}, {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 3.0}])
    sched = build_scheduler(opt, cfg)
    for _ in range(20):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.2, 0.3])  # the absolute text-encoder rate is scheduled too


def test_full_model_clipping():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.full((3,), 3.0), torch.full((4,), 4.0)
    norm = clip_gradients([a, b], 0.1)
    assert norm == pytest.approx((27 + 64) ** 0.5)
    total = torch.cat([a.grad, b.grad]).norm()
    assert float(total) == pytest.approx(0.1, rel=1e-5)
    torch.testing.assert_close(a.grad / b.grad[:3], torch.full((3,), 0.75))  # one global factor
