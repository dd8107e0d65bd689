import json

import pytest
import torch

from reference_data import reference_dir
from uniref.modeling.backbones.swin import (
    DropPath,
    SwinTransformer,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

PREFIX = "detr.detr.backbone.0.backbone."


def manifest(name: str) -> dict:
    return json.loads((reference_dir() / f"manifest-{name}.json").read_text())


def manifest_entries(name: str, prefix: str) -> list[tuple]:
    """(name below ``prefix``, shape, is_buffer, dtype) of the official state dict, in order."""
    return [(e["name"][len(prefix):], tuple(e["shape"]), bool(e["is_buffer"]), e["dtype"])
            for e in manifest(name)["entries"] if e["name"].startswith(prefix)]


def module_entries(module: torch.nn.Module) -> list[tuple]:
    buffers = dict(module.named_buffers())
    return [(k, tuple(v.shape), k in buffers, str(v.dtype).removeprefix("torch."))
            for k, v in module.state_dict().items()]


def tiny_swin(**kw) -> SwinTransformer:
    args = dict(window_size=4, drop_path_rate=0.1)
    args.update(kw)
    return SwinTransformer(16, [2, 2, 2, 2], [1, 2, 2, 4], **args)


def test_swin_large_state_dict_equals_official_manifest():
    with torch.device("meta"):
        model = SwinTransformer(192, [2, 2, 18, 2], [6, 12, 24, 48], window_size=12, drop_path_rate=0.3)
    expected = manifest_entries("swinl", PREFIX)
    assert len(expected) == 357
    assert module_entries(model) == expected
    totals = manifest("swinl")["totals_by_second_level_prefix"]["detr.detr.backbone"]
    assert sum(p.numel() for p in model.parameters()) == totals["params"] == 195_201_204
    assert sum(b.numel() for b in model.buffers()) == totals["buffers"]
    assert model.out_channels == {"res2": 192, "res3": 384, "res4": 768, "res5": 1536}
    assert model.strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for layer in model.layers for b in layer.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert all(b > a for a, b in zip(rates, rates[1:]))  # linear stochastic-depth schedule


def test_relative_position_index_buffer():
    model = tiny_swin()
    index = model.layers[0].blocks[0].attn.relative_position_index
    assert index.dtype == torch.int64 and index.shape == (16, 16)
    assert "layers.0.blocks.0.attn.relative_position_index" in model.state_dict()
    # a token with itself sits at the centre of the (2ws-1)^2 table; the pair (0, last) at a corner
    assert index.diagonal().eq((2 * 4 - 1) * 3 + 3).all()
    assert index[0, 15] == 0 and index[15, 0] == (2 * 4 - 1) ** 2 - 1
    # (i, j) and (j, i) have opposite offsets, so their indices mirror around the centre
    idx3 = relative_position_index(3)
    assert torch.equal(idx3 + idx3.T, torch.full_like(idx3, 2 * (5 * 2 + 2)))


def test_forward_shapes_on_sizes_not_multiple_of_window():
    torch.manual_seed(0)
    model = tiny_swin().eval()
    x = torch.randn(2, 3, 37, 51)
    with torch.no_grad():
        feats = model(x)
    assert list(feats) == ["res2", "res3", "res4", "res5"]
    shapes = {k: tuple(v.shape) for k, v in feats.items()}
    assert shapes == {"res2": (2, 16, 10, 13), "res3": (2, 32, 5, 7), "res4": (2, 64, 3, 4), "res5": (2, 128, 2, 2)}
    assert all(torch.isfinite(v).all() for v in feats.values())
    # batch elements are independent
    with torch.no_grad():
        single = model(x[1:])
    torch.testing.assert_close(single["res5"], feats["res5"][1:], rtol=1e-5, atol=1e-5)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = tiny_swin(drop_path_rate=0.0).train()
    feats = model(torch.randn(1, 3, 40, 36))
    sum((f ** 2).mean() for f in feats.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_fused_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    ref = tiny_swin().eval()
    fused = tiny_swin(fused_attn=True).eval()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 44, 30)
    with torch.no_grad():
        a, b = ref(x), fused(x)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-4)


def test_shift_mask_and_windows():
    x = torch.arange(2 * 8 * 12 * 3, dtype=torch.float32).view(2, 8, 12, 3)
    assert torch.equal(window_reverse(window_partition(x, 4), 4, 8, 12), x)
    mask = shifted_window_mask(5, 9, 4, 2, torch.device("cpu"))  # padded to 8 x 12 -> 6 windows
    assert mask.shape == (6, 16, 16)
    assert set(mask.unique().tolist()) == {0.0, -100.0}
    assert mask[0].eq(0).all()  # the top-left window is not cut by the shift
    assert mask[-1].ne(0).any()  # the bottom-right window mixes wrapped-around regions


def test_drop_path_is_stochastic_depth():
    dp = DropPath(0.5)
    x = torch.ones(64, 3, 2)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    torch.manual_seed(0)
    y = dp(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}  # whole samples are dropped, kept ones rescaled
    assert (per_sample == 0).all(1).any() and (per_sample == 2).all(1).any()


def test_frozen_stages():
    model = tiny_swin(frozen_stages=1)
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert all(p.requires_grad for p in model.layers[0].parameters())
    model = tiny_swin(frozen_stages=2)
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    assert all(p.requires_grad for p in model.layers[1].parameters())
