import json

import pytest
import torch

from reference_data import golden, max_abs_diff, reference_dir
from uniref.modeling.heads.pixel_decoder import MaskHeadSmallConv, PixelDecoder, memory_to_maps

TOL = 1e-5
NAMES = ("mask_head.", "lateral_conv.", "output_conv.", "mask_conv.")


def _level_start(spatial_shapes: torch.Tensor) -> torch.Tensor:
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


@pytest.fixture(scope="module")
def decoder_and_golden():
    g = golden("golden-mask-head")
    weights = {k: v for k, v in g.weights.items() if k.startswith(NAMES)}
    decoder = PixelDecoder(d_model=256, res2_channels=64, mask_dim=8).eval()
    decoder.load_state_dict(weights, strict=True)
    return decoder, g


def test_matches_official_mask_branch(decoder_and_golden):
    decoder, g = decoder_and_golden
    shapes = g.inputs["spatial_shapes"]
    with torch.no_grad():
        out = decoder.forward_intermediates(g.inputs["memory"], shapes, _level_start(shapes),
                                            g.inputs["extra_feature_res2"])
        plain = decoder(g.inputs["memory"], shapes.tolist(), _level_start(shapes).tolist(),
                        g.inputs["extra_feature_res2"])
    pairs = {
        "mask_head_out": out.coarse,
        "lateral_conv_out": out.lateral,
        "output_conv_out": out.fused,  # the official value is taken after the ReLU
        "mask_conv_out": out.mask_features,
    }
    for name, ours in pairs.items():
        expected = g.out(name)
        assert ours.shape == expected.shape, name
        assert max_abs_diff(ours, expected) <= TOL, name
    assert torch.equal(plain, out.mask_features)
    assert out.mask_features.shape == (2, 8, 16, 24)  # stride 4 of the 64 x 96 padded input


@pytest.mark.parametrize("name,res2", [("r50", 256), ("swinl", 192)])
def test_names_and_shapes_equal_official_manifest(name, res2):
    entries = json.loads((reference_dir() / f"manifest-{name}.json").read_text())["entries"]
    expected = {e["name"][len("detr."):]: tuple(e["shape"]) for e in entries
                if e["name"].startswith(tuple("detr." + n for n in NAMES))}
    with torch.device("meta"):
        decoder = PixelDecoder(256, res2, 8)
    assert {k: tuple(v.shape) for k, v in decoder.state_dict().items()} == expected


def test_memory_to_maps_round_trip():
    shapes = torch.tensor([[4, 6], [2, 3], [1, 2], [1, 1]])
    maps = [torch.randn(2, 5, int(h), int(w)) for h, w in shapes]
    memory = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
    back = memory_to_maps(memory, shapes, _level_start(shapes), num_levels=3)
    for a, b in zip(back, maps[:3]):
        assert torch.equal(a, b)


def test_mask_head_init_and_gradients():
    head = MaskHeadSmallConv(64, 2)
    assert head.lay1.out_channels == 16 and head.lay2.out_channels == 2
    assert all(m.bias.eq(0).all() for m in head.modules() if isinstance(m, torch.nn.Conv2d))
    decoder = PixelDecoder(64, 16, 2)
    shapes = torch.tensor([[4, 6], [2, 3], [1, 2], [1, 1]])
    memory = torch.randn(1, int((shapes[:, 0] * shapes[:, 1]).sum()), 64)
    out = decoder(memory, shapes, _level_start(shapes), torch.randn(1, 16, 8, 12))
    assert out.shape == (1, 2, 8, 12)
    out.square().sum().backward()
    assert all(p.grad is not None for p in decoder.parameters())
