import json

import pytest
import torch

from reference_data import golden, max_abs_diff, reference_dir
from uniref.modeling.reference.blocks import CBAM, FeatureFusionBlock, ResBlock
from uniref.modeling.reference.mask_encoder import MaskReferenceEncoder, SamMaskReferenceEncoder


def _manifest(name: str, prefix: str) -> list[tuple[str, tuple[int, ...]]]:
    entries = json.loads((reference_dir() / f"manifest-{name}.json").read_text())["entries"]
    return [(e["name"][len(prefix):], tuple(e["shape"])) for e in entries if e["name"].startswith(prefix)]


def golden_encoder() -> MaskReferenceEncoder:
    """The encoder with the weights ``golden-value-encoder`` was made with (stored in full-tiny-public)."""
    encoder = MaskReferenceEncoder().eval()
    encoder.load_state_dict(golden("full-tiny-public").weights_under("value_encoder."), strict=True)
    return encoder


def test_golden_internals_and_values():
    g = golden("golden-value-encoder")
    encoder = golden_encoder()
    image, mask = g.inputs["samples_tensors"], g.inputs["ref_masks"]
    srcs = [g.inputs[f"srcs_ref.{l}"] for l in range(4)]
    with torch.no_grad():
        trunk = encoder.forward_trunk(image, mask)
        for i, feat in enumerate(trunk):
            assert max_abs_diff(feat, g.out(f"value_encoder_internal.layer{i + 1}")) <= 1e-5
        assert max_abs_diff(encoder.final_layer(trunk[-1]), g.out("value_encoder_internal.final_layer")) <= 1e-5
        values = encoder(image, mask, srcs)
    assert len(values) == 4
    for l, v in enumerate(values):
        expected = g.out(f"values.{l}")
        assert v.shape == expected.shape
        assert max_abs_diff(v, expected) <= 1e-5


def test_mask_dtype_is_irrelevant():
    g = golden("golden-value-encoder")
    encoder = golden_encoder()
    image, mask = g.inputs["samples_tensors"], g.inputs["ref_masks"]
    srcs = [g.inputs[f"srcs_ref.{l}"] for l in range(4)]
    with torch.no_grad():
        a = encoder(image, mask, srcs)[0]
        b = encoder(image, mask.bool(), srcs)[0]
    assert torch.equal(a, b)


def test_state_dict_equals_official_manifest():
    with torch.device("meta"):
        encoder = MaskReferenceEncoder()
    ours = [(k, tuple(v.shape)) for k, v in encoder.state_dict().items()]
    assert ours == _manifest("r50", "value_encoder.")
    assert sum(p.numel() for p in encoder.parameters()) == 29_509_132


def test_sam_variant_state_dict_and_forward():
    with torch.device("meta"):
        sam = SamMaskReferenceEncoder()
    ours = [(k, tuple(v.shape)) for k, v in sam.state_dict().items()]
    assert ours == _manifest("sam", "model.value_encoder.")
    sam = SamMaskReferenceEncoder().eval()
    out = sam(torch.randn(1, 3, 64, 64), torch.ones(1, 1, 64, 64), torch.randn(1, 256, 4, 4))
    assert out.shape == (1, 256, 4, 4)


def test_official_init_without_download(monkeypatch):
    # Anything that tries to fetch weights must not be called.
    import torch.hub

    def refuse(*args, **kwargs):
        raise AssertionError("the mask encoder must not download anything")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    torch.manual_seed(0)
    encoder = MaskReferenceEncoder()
    assert torch.count_nonzero(encoder.conv1.bias) == 0
    assert torch.count_nonzero(encoder.layer3[0].downsample[0].bias) == 0
    assert torch.equal(encoder.bn1.weight, torch.ones(64))
    std = encoder.layer4[1].conv2.weight.std().item()
    assert abs(std - (2.0 / (9 * 512)) ** 0.5) < 0.1 * std
    out = encoder.eval()(torch.randn(1, 3, 64, 64), torch.zeros(1, 1, 64, 64),
                         [torch.randn(1, 256, s, s) for s in (8, 4, 2, 1)])
    assert [tuple(o.shape) for o in out] == [(1, 256, s, s) for s in (8, 4, 2, 1)]


def test_wrong_level_count_is_rejected():
    encoder = MaskReferenceEncoder().eval()
    with pytest.raises(ValueError, match="4 reference feature levels"):
        encoder(torch.randn(1, 3, 64, 64), torch.zeros(1, 1, 64, 64), [torch.randn(1, 256, 8, 8)])


def test_blocks_behave():
    torch.manual_seed(0)
    block = ResBlock(8, 4)
    assert block.downsample is not None and block.downsample.kernel_size == (3, 3)
    assert ResBlock(4, 4).downsample is None
    x = torch.randn(2, 4, 5, 5)
    same = ResBlock(4, 4)
    for conv in (same.conv1, same.conv2):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    assert torch.equal(same(x), x)  # identity skip when the residual is zero
    cbam = CBAM(32)
    y = torch.randn(2, 32, 6, 7)
    gated = cbam(y)
    assert gated.shape == y.shape and (gated.abs() <= y.abs() + 1e-6).all()  # gates are in (0, 1)
    fuser = FeatureFusionBlock(8 + 16, 16)
    assert fuser(torch.randn(1, 8, 3, 3), torch.randn(1, 16, 3, 3)).shape == (1, 16, 3, 3)


def test_narrow_encoder_builds_runs_and_trains():
    """The demo widths: trunk 32..256, values of d_model 128; same parameter names as the official encoder."""
    torch.manual_seed(0)
    encoder = MaskReferenceEncoder(128, 128, trunk_widths=(32, 64, 128, 256)).train()
    with torch.device("meta"):
        official = MaskReferenceEncoder()
    assert list(encoder.state_dict()) == list(official.state_dict())
    assert encoder.conv1.weight.shape == (32, 4, 7, 7) and encoder.layer4[0].conv1.weight.shape == (256, 128, 3, 3)
    assert encoder.final_layer[0].weight.shape == (128, 256, 3, 3)
    assert encoder.fuser2.block1.conv1.weight.shape == (128, 64 + 128, 3, 3)
    assert encoder.fuser5.block1.conv1.weight.shape == (128, 128 + 128, 3, 3)
    assert encoder.fuser3.attention.ChannelGate.mlp[1].weight.shape == (128 // 16, 128)  # CBAM reduction 16
    n_narrow = sum(p.numel() for p in encoder.parameters())
    assert n_narrow < sum(p.numel() for p in official.parameters()) / 3
    srcs = [torch.randn(2, 128, s, s) for s in (8, 4, 2, 1)]
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 10:40, 12:50] = 1
    out = encoder(torch.randn(2, 3, 64, 64), mask, srcs)
    assert [tuple(o.shape) for o in out] == [(2, 128, s, s) for s in (8, 4, 2, 1)]
    sum(o.square().mean() for o in out).backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing
    sam = SamMaskReferenceEncoder(64, 64, trunk_widths=(16, 32, 64, 128))
    assert not hasattr(sam, "layer4") and sam.fuser.block1.conv1.weight.shape == (64, 64 + 64, 3, 3)
    assert sam(torch.randn(1, 3, 64, 64), mask[:1], torch.randn(1, 64, 4, 4)).shape == (1, 64, 4, 4)


def test_bad_widths_are_rejected():
    with pytest.raises(ValueError, match="4 positive stage widths"):
        MaskReferenceEncoder(trunk_widths=(32, 64, 128))
    with pytest.raises(ValueError, match="multiple of 32"):
        MaskReferenceEncoder(96, 96 + 8)
