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
