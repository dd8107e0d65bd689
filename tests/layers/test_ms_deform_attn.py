"""Multi-scale deformable attention against ``golden-msdeformattn`` (official pure-PyTorch core and module)."""

from __future__ import annotations

import math

import pytest
import torch

from reference_data import golden, max_abs_diff
from uniref.layers.ms_deform_attn import MSDeformAttn, ms_deform_attn_core

TOL = 1e-5
CASES = [  # (golden case, reference input, padding mask used)
    ("module_ref2d", "reference_points_2d", True),
    ("module_ref4d", "reference_points_4d", True),
    ("module_ref2d_nomask", "reference_points_2d", False),
]


def _golden_module() -> tuple[MSDeformAttn, dict[str, torch.Tensor]]:
    g = golden("golden-msdeformattn")
    cfg = g.meta["module"]
    module = MSDeformAttn(cfg["d_model"], cfg["n_levels"], cfg["n_heads"], cfg["n_points"]).eval()
    module.load_state_dict(g.weights, strict=True)
    return module, g.inputs


def test_core_matches_official():
    g = golden("golden-msdeformattn")
    i = g.inputs
    loc = i["core.sampling_locations"]
    # the golden deliberately samples outside [0, 1] to exercise the zero padding
    assert ((loc < 0) | (loc > 1)).any()
    out = ms_deform_attn_core(i["core.value"], i["core.spatial_shapes"], loc, i["core.attention_weights"])
    assert out.shape == g.out("core.output").shape
    assert max_abs_diff(out, g.out("core.output")) <= TOL


def test_core_accepts_python_shapes():
    g = golden("golden-msdeformattn")
    i = g.inputs
    args = (i["core.sampling_locations"], i["core.attention_weights"])
    from_tensor = ms_deform_attn_core(i["core.value"], i["core.spatial_shapes"], *args)
    from_list = ms_deform_attn_core(i["core.value"], i["core.spatial_shapes"].tolist(), *args)
    assert torch.equal(from_tensor, from_list)


@pytest.mark.parametrize("case,ref_name,use_mask", CASES)
def test_module_matches_official(case: str, ref_name: str, use_mask: bool):
    module, i = _golden_module()
    g = golden("golden-msdeformattn")
    mask = i["module.input_padding_mask"] if use_mask else None
    if use_mask:
        assert mask.any() and not mask[0].any()  # batch 1 padded, batch 0 not
    with torch.no_grad():
        details = module.forward_detailed(
            i["module.query"], i[f"module.{ref_name}"], i["module.input_flatten"],
            i["module.input_spatial_shapes"], i["module.input_level_start_index"], mask,
        )
        plain = module(
            i["module.query"], i[f"module.{ref_name}"], i["module.input_flatten"],
            i["module.input_spatial_shapes"].tolist(), i["module.input_level_start_index"], mask,
        )
    assert max_abs_diff(details.output, g.out(f"{case}.output")) <= TOL
    assert torch.equal(plain, details.output)
    if use_mask:
        assert max_abs_diff(details.value, g.out(f"{case}.value_after_proj_and_mask")) <= TOL
        assert max_abs_diff(details.sampling_locations, g.out(f"{case}.sampling_locations")) <= TOL
        assert max_abs_diff(details.attention_weights, g.out(f"{case}.attention_weights")) <= TOL
        # padded values are zero
        assert (details.value[mask] == 0).all()


def test_padding_mask_changes_output():
    module, i = _golden_module()
    args = (i["module.query"], i["module.reference_points_2d"], i["module.input_flatten"],
            i["module.input_spatial_shapes"])
    with torch.no_grad():
        masked = module(*args, None, i["module.input_padding_mask"])
        unmasked = module(*args, None, None)
    # image 0 has no padding: identical; image 1 has padding: different
    assert torch.equal(masked[0], unmasked[0])
    assert max_abs_diff(masked[1], unmasked[1]) > 1e-4


def test_official_init():
    m = MSDeformAttn(d_model=64, n_levels=3, n_heads=8, n_points=4)
    assert m.sampling_offsets.weight.abs().sum() == 0
    assert m.attention_weights.weight.abs().sum() == 0 and m.attention_weights.bias.abs().sum() == 0
    assert m.value_proj.bias.abs().sum() == 0 and m.output_proj.bias.abs().sum() == 0
    bias = m.sampling_offsets.bias.view(8, 3, 4, 2)
    # head k points along angle k*2pi/8, on the unit square, scaled by the point index 1..4; same every level
    for k in range(8):
        d = torch.tensor([math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)])
        d = d / d.abs().max()
        for p in range(4):
            for lvl in range(3):
                assert torch.allclose(bias[k, lvl, p], d * (p + 1), atol=1e-6)
    # uniform attention at init: a constant value map comes back unchanged
    value = torch.full((1, 6 * 5 + 3 * 2 + 1, 8, 8), 2.0)
    loc = torch.full((1, 4, 8, 3, 4, 2), 0.5)
    w = torch.softmax(torch.zeros(1, 4, 8, 12), -1).view(1, 4, 8, 3, 4)
    out = ms_deform_attn_core(value, [(6, 5), (3, 2), (1, 1)], loc, w)
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=30, n_heads=8)
    m = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    q = torch.randn(1, 3, 16)
    x = torch.randn(1, 4 * 4 + 2 * 2, 16)
    with pytest.raises(ValueError, match="cover"):
        m(q, torch.rand(1, 3, 2, 2), x, [(4, 4), (2, 1)])
    with pytest.raises(ValueError, match="end in 2 or 4"):
        m(q, torch.rand(1, 3, 2, 3), x, [(4, 4), (2, 2)])


def test_gradients_reach_everything():
    torch.manual_seed(0)
    m = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2).train()
    # move away from the degenerate init so every weight influences the output
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    q = torch.randn(2, 3, 16, requires_grad=True)
    x = torch.randn(2, 4 * 4 + 2 * 2, 16, requires_grad=True)
    ref = torch.rand(2, 3, 2, 4, requires_grad=True)
    m(q, ref, x, [(4, 4), (2, 2)]).square().sum().backward()
    for name, p in [*m.named_parameters(), ("query", q), ("input", x), ("reference", ref)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
