import json

import pytest
import torch
import torch.nn.functional as F

from reference_data import golden, max_abs_diff, reference_dir
from uniref.modeling.heads.dynamic_mask_head import (
    aligned_bilinear,
    build_controller,
    compute_locations,
    dynamic_mask_logits,
    dynamic_param_counts,
    parse_dynamic_params,
    reference_points_to_pixels,
)

TOL = 1e-5


@pytest.fixture(scope="module")
def g():
    return golden("golden-mask-head")


def test_controller_matches_official(g):
    controller = build_controller(256, 169, 3).eval()
    controller.load_state_dict(g.weights_under("controller."), strict=True)
    with torch.no_grad():
        params = controller(g.inputs["hs"])
    assert params.shape == (2, 5, 169)
    assert max_abs_diff(params, g.out("controller_params")) <= TOL


def test_controller_names_and_init():
    entries = json.loads((reference_dir() / "manifest-r50.json").read_text())["entries"]
    expected = {e["name"][len("detr.controller."):]: tuple(e["shape"]) for e in entries
                if e["name"].startswith("detr.controller.")}
    controller = build_controller()
    assert {k: tuple(v.shape) for k, v in controller.state_dict().items()} == expected
    assert all(layer.bias.eq(0).all() for layer in controller.layers)
    assert sum(p.numel() for p in controller.parameters()) == 175_017


def test_param_layout():
    assert dynamic_param_counts(8, 8, 3, True) == ([80, 64, 8], [8, 8, 1])
    params = torch.arange(2 * 169, dtype=torch.float32).view(2, 169)
    weights, biases = parse_dynamic_params(params, 8, [80, 64, 8], [8, 8, 1])
    assert [tuple(w.shape) for w in weights] == [(16, 10, 1, 1), (16, 8, 1, 1), (2, 8, 1, 1)]
    assert [tuple(b.shape) for b in biases] == [(16,), (16,), (2,)]
    # all weights first, row-major out x in; then the biases
    assert weights[0][0, :, 0, 0].tolist() == list(range(10))
    assert weights[0][8, 0, 0, 0] == 169  # first weight of instance 1
    assert weights[2][0, :, 0, 0].tolist() == list(range(144, 152))
    assert biases[0].tolist()[:8] == list(range(152, 160))
    assert biases[2].tolist() == [168, 169 + 168]
    with pytest.raises(ValueError):
        parse_dynamic_params(torch.zeros(2, 170), 8, [80, 64, 8], [8, 8, 1])


def test_pixel_reference_points_equal_official_glue(g):
    px = reference_points_to_pixels(g.inputs["reference_points_normalized"], g.inputs["image_sizes"])
    assert torch.equal(px.reshape(1, 10, 2), g.inputs["reference_points_pixels"])


def test_locations_are_cell_centres():
    loc = compute_locations(2, 3, 4)
    assert loc.tolist() == [[2, 2], [6, 2], [10, 2], [2, 6], [6, 6], [10, 6]]


@pytest.mark.parametrize("task,out_stride,size", [("rvos", 4, (16, 24)), ("vos", 1, (64, 96))])
def test_mask_logits_match_official(g, task, out_stride, size):
    logits = dynamic_mask_logits(g.out("mask_conv_out"), g.out("controller_params"),
                                 g.inputs["reference_points_normalized"], g.inputs["image_sizes"],
                                 mask_stride=4, out_stride=out_stride)
    expected = g.out(f"{task}.pred_masks")
    assert logits.shape == expected.shape == (2, 5, 1, *size)
    assert max_abs_diff(logits, expected) <= TOL


def test_single_query_equals_the_slice_of_all(g):
    feats, params = g.out("mask_conv_out"), g.out("controller_params")
    refs, sizes = g.inputs["reference_points_normalized"], g.inputs["image_sizes"]
    full = dynamic_mask_logits(feats, params, refs, sizes, 4, 1)
    top = torch.tensor([3, 0])  # one query per image, as the predictors decode only the top-1
    idx = torch.arange(2)
    one = dynamic_mask_logits(feats, params[idx, top][:, None], refs[idx, top][:, None], sizes, 4, 1)
    assert one.shape == (2, 1, 1, 64, 96)
    torch.testing.assert_close(one[:, 0], full[idx, top], rtol=1e-6, atol=1e-5)
    empty = dynamic_mask_logits(feats, params[:, :0], refs[:, :0], sizes, 4, 4)
    assert empty.shape == (2, 0, 1, 16, 24)


def _naive_logits(feats, params, refs, sizes, stride):
    """Loop over instances with explicit matrix products (independent of the grouped-conv path)."""
    b, m, h, w = feats.shape
    ys, xs = torch.meshgrid(torch.arange(h) * stride + stride // 2, torch.arange(w) * stride + stride // 2,
                            indexing="ij")
    out = torch.empty(b, params.shape[1], 1, h, w)
    for i in range(b):
        H, W = sizes[i].tolist()
        for n in range(params.shape[1]):
            p = params[i, n]
            w0, w1, w2 = p[:80].view(8, 10), p[80:144].view(8, 8), p[144:152].view(1, 8)
            b0, b1, b2 = p[152:160], p[160:168], p[168:169]
            rel = torch.stack([refs[i, n, 0] * W - xs, refs[i, n, 1] * H - ys])
            x = torch.cat([rel, feats[i]]).reshape(10, -1)
            x = F.relu(w0 @ x + b0[:, None])
            x = F.relu(w1 @ x + b1[:, None])
            out[i, n, 0] = (w2 @ x + b2[:, None]).view(h, w)
    return out


def test_grouped_conv_equals_naive_loop_with_uneven_images():
    torch.manual_seed(0)
    feats = torch.randn(3, 8, 5, 7)
    params = torch.randn(3, 4, 169) * 0.3
    refs = torch.rand(3, 4, 2)
    sizes = torch.tensor([[20, 28], [17, 25], [9, 13]])
    ours = dynamic_mask_logits(feats, params, refs, sizes, mask_stride=4, out_stride=4)
    torch.testing.assert_close(ours, _naive_logits(feats, params, refs, sizes, 4), rtol=1e-5, atol=1e-5)


def test_gradients_reach_params_and_features():
    feats = torch.randn(1, 8, 4, 4, requires_grad=True)
    params = (torch.randn(1, 2, 169) * 0.3).requires_grad_(True)
    logits = dynamic_mask_logits(feats, params, torch.rand(1, 2, 2), [[16, 16]], 4, 1)
    logits.sum().backward()
    assert feats.grad.abs().sum() > 0 and params.grad[..., :80].abs().sum() > 0


def test_aligned_bilinear():
    x = torch.randn(2, 3, 4, 5)
    assert aligned_bilinear(x, 1) is x
    up = aligned_bilinear(x, 4)
    assert up.shape == (2, 3, 16, 20)
    # input pixel i lands on output pixel f*i + f//2 (centres stay aligned)
    torch.testing.assert_close(up[:, :, 2::4, 2::4], x, rtol=1e-6, atol=1e-6)
    const = aligned_bilinear(torch.full((1, 1, 3, 3), 0.7), 2)
    torch.testing.assert_close(const, torch.full((1, 1, 6, 6), 0.7))
    with pytest.raises(ValueError):
        aligned_bilinear(x, 0)
    with pytest.raises(ValueError):
        aligned_bilinear(x[0], 2)
