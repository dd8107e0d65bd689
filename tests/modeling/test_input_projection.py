import json

import pytest
import torch

from reference_data import golden, max_abs_diff, reference_dir
from uniref.layers.position_encoding import PositionEmbeddingSine
from uniref.modeling.backbones import build_backbone
from uniref.modeling.input_projection import build_input_proj, project_features, resize_mask

PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def manifest_entries(name: str, prefix: str) -> list[tuple]:
    entries = json.loads((reference_dir() / f"manifest-{name}.json").read_text())["entries"]
    return [(e["name"][len(prefix):], tuple(e["shape"])) for e in entries if e["name"].startswith(prefix)]


@pytest.mark.parametrize("name,channels", [("r50", [512, 1024, 2048]), ("swinl", [384, 768, 1536])])
def test_state_dict_equals_official_manifest(name, channels):
    with torch.device("meta"):
        proj = build_input_proj(channels, d_model=256, num_feature_levels=4)
    ours = [(k, tuple(v.shape)) for k, v in proj.state_dict().items()]
    assert ours == manifest_entries(name, "detr.detr.input_proj.")


def test_init_and_layers():
    proj = build_input_proj([8, 16, 32], d_model=64, num_feature_levels=5)
    assert len(proj) == 5
    assert all(p[0].bias.eq(0).all() for p in proj)
    assert proj[3][0].kernel_size == (3, 3) and proj[3][0].stride == (2, 2) and proj[3][0].in_channels == 32
    assert proj[4][0].in_channels == 64  # a further level takes the previous projected level
    assert all(p[1].num_groups == 32 for p in proj)
    bound = (6 / (8 + 64)) ** 0.5  # xavier-uniform bound of a 1x1 conv 8 -> 64
    assert proj[0][0].weight.abs().max() <= bound and proj[0][0].weight.std() > bound / 4
    with pytest.raises(ValueError):
        build_input_proj([8, 16, 32], num_feature_levels=2)


def test_level_masks_are_the_image_mask_resized():
    g = golden("golden-deformable-transformer")
    image_mask = g.inputs["image_padding_mask"]
    for level in range(4):
        expected = g.inputs[f"masks.{level}"]
        assert torch.equal(resize_mask(image_mask, tuple(expected.shape[-2:])), expected), level


def test_extra_level_mask_comes_from_level_zero():
    # a 49-row image in a 160-row batch: the direct image resize and the level-0 resize disagree at level 3
    proj = build_input_proj([4, 4, 4], d_model=32, num_feature_levels=5)
    feats = {"res3": torch.randn(1, 4, 20, 3), "res4": torch.randn(1, 4, 10, 2), "res5": torch.randn(1, 4, 5, 1)}
    image_mask = torch.zeros(1, 160, 24, dtype=torch.bool)
    image_mask[:, 49:] = True
    srcs, masks, pos = project_features(proj, feats, image_mask, PositionEmbeddingSine(16))
    assert [tuple(s.shape[-2:]) for s in srcs] == [(20, 3), (10, 2), (5, 1), (3, 1), (2, 1)]
    assert torch.equal(masks[1], resize_mask(image_mask, (10, 2)))
    assert torch.equal(masks[3], resize_mask(masks[0], (3, 1)))
    assert not torch.equal(masks[3], resize_mask(image_mask, (3, 1)))
    assert torch.equal(masks[4], resize_mask(masks[0], (2, 1)))
    assert all(p.shape == s.shape for p, s in zip(pos, srcs))


def _pad(x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, *size)
    out[:, :, :h, :w] = x
    mask = torch.ones(b, *size, dtype=torch.bool)
    mask[:, :h, :w] = False
    return out, mask


@pytest.fixture(scope="module")
def tiny_visual():
    g = golden("full-tiny-public")
    backbone = build_backbone("resnet18").eval()
    backbone.load_state_dict(g.weights_under("detr.detr.backbone.0.backbone."), strict=True)
    proj = build_input_proj([backbone.out_channels[k] for k in ("res3", "res4", "res5")]).eval()
    proj.load_state_dict(g.weights_under("detr.detr.input_proj."), strict=True)
    return g, backbone, proj


def _run(backbone, proj, image):
    padded, mask = _pad(image, (160, 192))  # 144 x 192 padded to a multiple of 32
    with torch.no_grad():
        feats = backbone(padded)
        return project_features(proj, feats, mask, PositionEmbeddingSine(128, normalize=True))


def test_resnet18_and_projection_reproduce_ris_fusion_inputs(tiny_visual):
    g, backbone, proj = tiny_visual
    srcs, masks, pos = _run(backbone, proj, g.inputs["ris.images_normalized"])
    for level in range(4):
        expected = g.out(f"ris.call0.fusion.srcs_in.{level}")
        assert srcs[level].shape == expected.shape
        assert max_abs_diff(srcs[level], expected) <= 1e-5, level
        assert pos[level].shape == expected.shape
    assert [tuple(m.shape[-2:]) for m in masks] == [(20, 24), (10, 12), (5, 6), (3, 3)]
    assert masks[0][0, 18:].all() and not masks[0][0, :18].any()


def test_resnet18_and_projection_reproduce_vos_reference_backbone(tiny_visual):
    g, backbone, proj = tiny_visual
    frame = g.inputs["vos.frames_preprocessed"][0:1].float()
    srcs, masks, pos = _run(backbone, proj, (frame - PIXEL_MEAN) / PIXEL_STD)
    for level in range(4):
        assert max_abs_diff(srcs[level], g.out(f"vos.ref_backbone0.srcs.{level}")) <= 1e-5, level
        assert torch.equal(masks[level], g.out(f"vos.ref_backbone0.masks.{level}")), level
        torch.testing.assert_close(pos[level], PositionEmbeddingSine(128)(masks[level]), rtol=0, atol=0)


def test_resnet18_and_projection_reproduce_rvos_frame1_fusion_inputs(tiny_visual):
    g, backbone, proj = tiny_visual
    frame = g.inputs["rvos.frames_preprocessed"][1:2].float()  # rvos call 1 runs on frame 1
    srcs, _, _ = _run(backbone, proj, (frame - PIXEL_MEAN) / PIXEL_STD)
    for level in range(4):
        assert max_abs_diff(srcs[level], g.out(f"rvos.call1.fusion.srcs_in.{level}")) <= 1e-5, level
