import pytest
import torch

from uniref.modeling.backbones import Backbone, ResNet, SwinTransformer, available_backbones, build_backbone


def test_build_by_name_and_override():
    with torch.device("meta"):
        r50 = build_backbone("resnet50")
        swin = build_backbone("swin_large")
    assert isinstance(r50, ResNet) and isinstance(swin, SwinTransformer)
    assert isinstance(r50, Backbone) and isinstance(swin, Backbone)
    assert r50.out_channels["res2"] == 256 and swin.out_channels["res2"] == 192
    assert swin.layers[0].blocks[0].attn.window_size == 12
    small = build_backbone("swin_large", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=3)
    assert small.out_channels == {"res2": 16, "res3": 32, "res4": 64, "res5": 128}
    feats = small(torch.randn(1, 3, 30, 26))
    assert {k: v.shape[1] for k, v in feats.items()} == small.out_channels
    r18 = build_backbone("resnet18", freeze_at=0)
    assert all(p.requires_grad for p in r18.parameters())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        build_backbone("resnet13")
    for name in available_backbones():
        assert name in str(err.value)
    assert {"resnet18", "resnet50", "swin_large"} <= set(available_backbones())


def test_width_narrows_every_stage_and_keeps_the_names():
    torch.manual_seed(0)
    narrow = build_backbone("resnet18", width=32, freeze_at=0).train()
    with torch.device("meta"):
        default = build_backbone("resnet18")
        r50 = build_backbone("resnet50", width=32)
        swin = build_backbone("swin_large", width=96)
    assert default.out_channels == {"res2": 64, "res3": 128, "res4": 256, "res5": 512}
    assert narrow.out_channels == {"res2": 32, "res3": 64, "res4": 128, "res5": 256}
    assert list(narrow.state_dict()) == list(default.state_dict())
    assert narrow.stem.conv1.weight.shape == (32, 3, 7, 7)
    assert r50.out_channels == {"res2": 128, "res3": 256, "res4": 512, "res5": 1024}
    assert r50.res2[0].conv1.weight.shape == (32, 32, 1, 1)
    assert swin.out_channels["res2"] == 96
    feats = narrow(torch.randn(2, 3, 96, 128))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "res2": (2, 32, 24, 32), "res3": (2, 64, 12, 16), "res4": (2, 128, 6, 8), "res5": (2, 256, 3, 4)}
    sum(f.mean() for f in feats.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in narrow.parameters())
    # explicit keyword arguments win over the width
    assert build_backbone("resnet18", width=32, stem_out_channels=16).stem.conv1.weight.shape[0] == 16
