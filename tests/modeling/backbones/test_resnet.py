import json

import pytest
import torch

from reference_data import reference_dir
from uniref.layers.frozen_batchnorm import FrozenBatchNorm2d
from uniref.modeling.backbones.resnet import ResNet, ResNetConfig

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


def test_r50_state_dict_equals_official_manifest():
    with torch.device("meta"):
        model = ResNet(50)
    expected = manifest_entries("r50", PREFIX)
    assert len(expected) == 265
    assert module_entries(model) == expected  # names, shapes, dtypes, buffer flags and order
    totals = manifest("r50")["totals_by_second_level_prefix"]["detr.detr.backbone"]
    assert sum(p.numel() for p in model.parameters()) == totals["params"] == 23_454_912
    assert sum(b.numel() for b in model.buffers()) == totals["buffers"]


def test_r18_layout_matches_the_tiny_checkpoint():
    with torch.device("meta"):
        model = ResNet(18)
    assert model.out_channels == {"res2": 64, "res3": 128, "res4": 256, "res5": 512}
    assert model.strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    keys = set(model.state_dict())
    assert "res2.0.shortcut.weight" not in keys  # 64 -> 64 needs no projection
    assert "res3.0.shortcut.norm.running_var" in keys
    assert model.res5[0].conv1.stride == (2, 2)
    # README 5: "detr.detr.backbone" holds 11,186,112 elements in the tiny model (parameters + FrozenBN buffers)
    assert sum(t.numel() for t in model.state_dict().values()) == 11_186_112


def test_stride_on_3x3_and_no_conv_bias():
    with torch.device("meta"):
        model = ResNet(50)
    block = model.res3[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert all(isinstance(m.norm, FrozenBatchNorm2d) for m in model.modules() if hasattr(m, "norm"))


def test_freeze_at_two_freezes_stem_and_res2_only():
    model = ResNet(18)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("stem.", "res2."))}
    assert trainable and all(n.startswith(("res3.", "res4.", "res5.")) for n in trainable)
    assert all(p.requires_grad for p in ResNet(18, freeze_at=0).parameters())


def test_forward_shapes_and_gradients_on_odd_size():
    torch.manual_seed(0)
    model = ResNet.from_config(ResNetConfig(depth=18, res2_out_channels=64)).train()
    x = torch.randn(1, 3, 50, 70)
    feats = model(x)
    assert list(feats) == ["res2", "res3", "res4", "res5"]
    sizes = {k: tuple(v.shape[-2:]) for k, v in feats.items()}
    assert sizes == {"res2": (13, 18), "res3": (7, 9), "res4": (4, 5), "res5": (2, 3)}
    sum(f.mean() for f in feats.values()).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_out_features_subset_and_errors():
    model = ResNet(18, out_features=("res3",))
    assert list(model(torch.randn(1, 3, 32, 32))) == ["res3"]
    assert model.out_channels == {"res3": 128}
    with pytest.raises(ValueError, match="depth"):
        ResNet(20)
    with pytest.raises(ValueError, match="output features"):
        ResNet(18, out_features=("res6",))
    with pytest.raises(ValueError, match="num_groups"):
        ResNet(18, num_groups=2)


def test_groupnorm_trunk_is_trainable_starts_blocks_as_identity_and_keeps_the_names():
    frozen = ResNet(18, stem_out_channels=32, res2_out_channels=32, freeze_at=0)
    gn = ResNet(18, stem_out_channels=32, res2_out_channels=32, freeze_at=0, norm="GN")
    # the same parameter names (norm.weight / norm.bias); GN has no running statistics
    assert {k for k in gn.state_dict()} == {k for k in frozen.state_dict() if not k.endswith(("running_mean",
                                                                                               "running_var"))}
    norm = gn.res3[0].conv1.norm
    assert isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == 64 // 8 and norm.weight.requires_grad
    # the norm closing each residual branch starts at zero: a block is its shortcut at initialisation
    block = gn.res2[1]
    assert torch.count_nonzero(block.conv2.norm.weight) == 0
    x = torch.rand(2, 32, 16, 16)
    torch.testing.assert_close(block(x), torch.relu(x))
    out = gn(torch.randn(2, 3, 64, 96))
    # normalised features keep a unit-order scale through the trunk (frozen identity norms would not)
    assert all(0.05 < float(v.std()) < 5.0 for v in out.values())
    out["res5"].sum().backward()
    assert gn.stem.conv1.norm.weight.grad is not None
    with pytest.raises(ValueError, match="unknown ResNet norm 'BN'"):
        ResNet(18, norm="BN")
