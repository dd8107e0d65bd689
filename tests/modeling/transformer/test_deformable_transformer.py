"""The two-stage deformable transformer and its heads against ``golden-deformable-transformer``."""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch
from torch import nn

from reference_data import golden, max_abs_diff, reference_dir
from uniref.layers.mlp import MLP
from uniref.modeling.transformer.deformable_transformer import DeformableTransformer, TransformerOutput
from uniref.modeling.transformer.heads import build_detection_heads, predict_per_layer
from uniref.modeling.transformer.two_stage import encoder_output_proposals

TOL = 1e-5
ALIASES = ("transformer.decoder.class_embed.", "transformer.decoder.bbox_embed.")


def sine_position_embedding(mask: torch.Tensor, num_pos_feats: int = 128, temperature: float = 10000.0) -> torch.Tensor:
    """Test-private ``PositionEmbeddingSine(normalize=True)`` (spec 4.2): ``[B, h, w]`` -> ``[B, 2F, h, w]``."""
    not_mask = ~mask
    y = not_mask.cumsum(1, dtype=torch.float32)
    x = not_mask.cumsum(2, dtype=torch.float32)
    scale = 2 * math.pi
    y = (y - 0.5) / (y[:, -1:, :] + 1e-6) * scale
    x = (x - 0.5) / (x[:, :, -1:] + 1e-6) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


@functools.cache
def _golden_setup() -> tuple[DeformableTransformer, nn.ModuleList, nn.ModuleList, torch.Tensor]:
    g = golden("golden-deformable-transformer")
    c = g.meta["config"]
    transformer = DeformableTransformer(
        d_model=c["d_model"], nhead=c["nhead"], num_encoder_layers=c["enc_layers"],
        num_decoder_layers=c["dec_layers"], dim_feedforward=c["dim_feedforward"], dropout=c["dropout"],
        num_feature_levels=c["levels"], dec_n_points=c["dec_n_points"], enc_n_points=c["enc_n_points"],
        two_stage_num_proposals=c["two_stage_num_proposals"], mixed_selection=c["mixed_selection"],
        look_forward_twice=c["look_forward_twice"],
    ).eval()
    weights = g.weights_under("transformer.")
    # the official decoder holds aliases of the head lists; they must equal the heads, then we drop them
    for alias, head in (("decoder.class_embed.", "class_embed."), ("decoder.bbox_embed.", "bbox_embed.")):
        aliased = {k[len(alias):]: v for k, v in weights.items() if k.startswith(alias)}
        assert aliased and aliased.keys() == g.weights_under(head).keys()
        for k, v in aliased.items():
            assert torch.equal(v, g.weights[head + k])
    transformer.load_state_dict(
        {k: v for k, v in weights.items() if not ("transformer." + k).startswith(ALIASES)}, strict=True
    )
    class_embed, bbox_embed = build_detection_heads(c["d_model"], c["num_classes"], c["dec_layers"])
    class_embed.load_state_dict(g.weights_under("class_embed."), strict=True)
    bbox_embed.load_state_dict(g.weights_under("bbox_embed."), strict=True)
    return transformer, class_embed.eval(), bbox_embed.eval(), g.weights["query_embed.weight"]


@functools.cache
def _golden_run() -> TransformerOutput:
    g = golden("golden-deformable-transformer")
    transformer, class_embed, bbox_embed, query = _golden_setup()
    i = g.inputs
    with torch.no_grad():
        return transformer(
            [i[f"srcs.{l}"] for l in range(4)], [i[f"masks.{l}"] for l in range(4)],
            [i[f"pos_embeds.{l}"] for l in range(4)], query, class_embed, bbox_embed,
        )


def assert_close_with_inf(ours: torch.Tensor, ref: torch.Tensor, tol: float) -> float:
    """Same shape, ``+inf`` exactly where the reference has it, finite parts within ``tol``."""
    assert ours.shape == ref.shape
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(ours), finite)
    assert torch.equal(ours[~finite], ref[~finite])
    diff = max_abs_diff(ours[finite], ref[finite])
    assert diff <= tol, diff
    return diff


@pytest.mark.parametrize(
    "name", ["hs", "memory", "init_reference", "inter_references", "enc_outputs_class", "enc_outputs_coord_unact"]
)
def test_transformer_matches_official(name: str):
    g = golden("golden-deformable-transformer")
    out = _golden_run()
    assert_close_with_inf(getattr(out, name), g.out(name), TOL)


def test_inf_pattern_is_exercised():
    g = golden("golden-deformable-transformer")
    coords = g.out("enc_outputs_coord_unact")
    padded = torch.cat([g.inputs[f"masks.{l}"].flatten(1) for l in range(4)], 1)
    # every padded position is +inf, every valid one finite (no proposal leaves (0.01, 0.99) at these sizes)
    assert padded.any()
    assert torch.isinf(coords[padded]).all() and torch.isfinite(coords[~padded]).all()
    out = _golden_run()
    assert torch.equal(torch.isinf(out.enc_outputs_coord_unact), torch.isinf(coords))


def test_out_of_range_proposals_are_inf():
    # a 60-wide level puts the first centre at 0.5/60 < 0.01; level 5 has side 0.05 * 32 = 1.6 > 0.99
    shapes = [(2, 60), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1)]
    memory = torch.randn(1, 125, 8)
    mask = torch.zeros(1, 125, dtype=torch.bool)
    mask[0, 60:120] = True  # the second row of level 0 is padding
    out_memory, proposals = encoder_output_proposals(memory, mask, shapes)
    invalid = torch.isinf(proposals).all(-1)
    assert torch.equal(torch.isinf(proposals).any(-1), invalid)
    expected = mask[0].clone()
    expected[[0, 59, 124]] = True
    assert torch.equal(invalid[0], expected)
    assert (out_memory[invalid] == 0).all() and torch.equal(out_memory[~invalid], memory[~invalid])
    # valid proposals decode to the cell centre of the valid area and the level's side
    box = proposals[0, 1].sigmoid()
    assert torch.allclose(box, torch.tensor([1.5 / 60, 0.5, 0.05, 0.05]), atol=1e-6)
    assert torch.allclose(proposals[0, 120].sigmoid(), torch.tensor([0.5, 0.5, 0.1, 0.1]), atol=1e-6)


def test_two_stage_topk_identical():
    g = golden("golden-deformable-transformer")
    out = _golden_run()
    q = g.meta["config"]["two_stage_num_proposals"]
    ours = torch.topk(out.enc_outputs_class[..., 0], q, dim=1)[1]
    ref = torch.topk(g.out("enc_outputs_class")[..., 0], q, dim=1)[1]
    assert torch.equal(ours, ref)
    # the selected boxes are the sigmoid of those proposals: init_reference identical
    assert torch.equal(out.init_reference, g.out("init_reference"))


def test_bookkeeping_outputs():
    g = golden("golden-deformable-transformer")
    out = _golden_run()
    shapes = [list(g.inputs[f"srcs.{l}"].shape[-2:]) for l in range(4)]
    assert out.spatial_shapes.tolist() == shapes
    assert out.level_start_index.tolist() == [0, 96, 120, 126]
    # image 1 is valid 52x70 of 64x96; level 0 (8x12) keeps rows/cols that start inside the valid area
    masks0 = g.inputs["masks.0"]
    expected = torch.stack([(~masks0[:, 0, :]).sum(1) / 12, (~masks0[:, :, 0]).sum(1) / 8], -1).float()
    assert torch.equal(out.valid_ratios[:, 0], expected)
    assert (out.valid_ratios[0] == 1).all() and (out.valid_ratios[1] < 1).any()


def test_per_layer_predictions_match_official():
    g = golden("golden-deformable-transformer")
    _, class_embed, bbox_embed, _ = _golden_setup()
    out = _golden_run()
    with torch.no_grad():
        logits, boxes, refs = predict_per_layer(out, class_embed, bbox_embed)
    assert max_abs_diff(logits, g.out("pred_logits_per_layer")) <= TOL
    assert max_abs_diff(boxes, g.out("pred_boxes_per_layer")) <= TOL
    assert torch.equal(refs[0], out.init_reference)
    assert torch.equal(refs[1:], out.inter_references[:-1])
    # look-forward-twice: a layer's prediction is the refined reference that the decoder stored
    assert max_abs_diff(boxes, out.inter_references) <= 1e-6


def test_position_helper_reproduces_golden_inputs():
    g = golden("golden-deformable-transformer")
    for l in range(4):
        ours = sine_position_embedding(g.inputs[f"masks.{l}"])
        assert max_abs_diff(ours, g.inputs[f"pos_embeds.{l}"]) <= 1e-6


def _official_names(prefix: str, drop: tuple[str, ...] = ()) -> dict[str, list[int]]:
    manifest = json.loads((reference_dir() / "manifest-r50.json").read_text())
    return {
        e["name"][len(prefix):]: e["shape"] for e in manifest["entries"]
        if e["name"].startswith(prefix) and not e["name"][len(prefix):].startswith(drop)
    }


def test_state_dict_names_equal_official_r50():
    transformer = DeformableTransformer()  # the official r50/swinl sizes are the defaults
    ours = {k: list(v.shape) for k, v in transformer.state_dict().items()}
    official = _official_names("detr.detr.transformer.", drop=("decoder.class_embed.", "decoder.bbox_embed."))
    assert list(ours) == list(official)  # same order too
    assert ours == official
    class_embed, bbox_embed = build_detection_heads(256, 1, 6)
    for name, heads in (("class_embed", class_embed), ("bbox_embed", bbox_embed)):
        heads_sd = {k: list(v.shape) for k, v in heads.state_dict().items()}
        assert heads_sd == _official_names(f"detr.detr.{name}.")


def test_official_head_init():
    class_embed, bbox_embed = build_detection_heads(32, 3, 4)
    assert len(class_embed) == len(bbox_embed) == 5
    assert len(build_detection_heads(32, 3, 4, two_stage=False)[0]) == 4
    for cls, box in zip(class_embed, bbox_embed):
        assert torch.allclose(cls.bias, torch.full((3,), -math.log(99.0)))
        assert isinstance(box, MLP) and len(box.layers) == 3
        assert box.layers[-1].weight.abs().sum() == 0 and box.layers[-1].bias.abs().sum() == 0
    # the heads are distinct modules (no parameter sharing)
    assert class_embed[0].weight.data_ptr() != class_embed[1].weight.data_ptr()


def test_transformer_does_not_own_the_heads():
    transformer = DeformableTransformer(num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16)
    assert not any("class_embed" in k or "bbox_embed" in k for k in transformer.state_dict())
    with pytest.raises(ValueError, match="heads"):
        class_embed, bbox_embed = build_detection_heads(256, 1, 3)
        transformer([], [], [], torch.zeros(300, 256), class_embed, bbox_embed)
    class_embed, bbox_embed = build_detection_heads(256, 1, 1)
    with pytest.raises(ValueError, match="levels"):
        transformer([torch.zeros(1, 256, 2, 2)], [torch.zeros(1, 2, 2, dtype=torch.bool)], [torch.zeros(1, 256, 2, 2)],
                    torch.zeros(300, 256), class_embed, bbox_embed)


def _tiny_inputs(batch: int, shapes: list[tuple[int, int]], valid: list[tuple[int, int]], d_model: int = 256):
    """Random features with a bottom/right padding per image (``valid`` = unpadded level-0 size)."""
    srcs, masks, pos = [], [], []
    h0, w0 = shapes[0]
    for h, w in shapes:
        mask = torch.ones(batch, h, w, dtype=torch.bool)
        for b, (vh, vw) in enumerate(valid):
            mask[b, : math.ceil(vh * h / h0), : math.ceil(vw * w / w0)] = False
        srcs.append(torch.randn(batch, d_model, h, w))
        masks.append(mask)
        pos.append(sine_position_embedding(mask, d_model // 2))
    return srcs, masks, pos


def test_train_mode_shapes_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    num_dec, queries = 2, 5
    transformer = DeformableTransformer(
        num_encoder_layers=1, num_decoder_layers=num_dec, dim_feedforward=32, dropout=0.1,
        two_stage_num_proposals=queries,
    ).train()
    # dropout is real in train mode
    assert any(isinstance(m, nn.Dropout) and m.p == 0.1 for m in transformer.modules())
    class_embed, bbox_embed = build_detection_heads(256, 1, num_dec)
    query_embed = nn.Embedding(queries, 256)
    # leave the zero inits (last box layers, deformable offsets/weights) so that every input of those layers
    # influences the loss; at the exact official init level_embed's gradient is identically zero
    with torch.no_grad():
        for name, p in [*transformer.named_parameters(), *bbox_embed.named_parameters()]:
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.01)
    shapes = [(8, 10), (4, 5), (2, 3), (1, 2)]
    srcs, masks, pos = _tiny_inputs(2, shapes, [(8, 10), (6, 7)])
    out = transformer(srcs, masks, pos, query_embed.weight, class_embed, bbox_embed)
    s = sum(h * w for h, w in shapes)
    assert out.hs.shape == (num_dec, 2, queries, 256)
    assert out.init_reference.shape == (2, queries, 4) and not out.init_reference.requires_grad
    assert out.inter_references.shape == (num_dec, 2, queries, 4) and out.inter_references.requires_grad
    assert out.enc_outputs_class.shape == (2, s, 1) and out.enc_outputs_coord_unact.shape == (2, s, 4)
    assert out.memory.shape == (2, s, 256) and out.valid_ratios.shape == (2, 4, 2)
    logits, boxes, refs = predict_per_layer(out, class_embed, bbox_embed)
    assert logits.shape == (num_dec, 2, queries, 1) and boxes.shape == refs.shape == (num_dec, 2, queries, 4)
    coords = out.enc_outputs_coord_unact
    loss = logits.sum() + boxes.sum() + out.enc_outputs_class.sum() + coords[torch.isfinite(coords)].sum()
    loss.backward()
    named = [
        *(("transformer." + k, p) for k, p in transformer.named_parameters()),
        *(("class_embed." + k, p) for k, p in class_embed.named_parameters()),
        *(("bbox_embed." + k, p) for k, p in bbox_embed.named_parameters()),
        ("query_embed.weight", query_embed.weight),
    ]
    missing = [k for k, p in named if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_look_forward_twice_reaches_previous_box_head():
    torch.manual_seed(1)
    transformer = DeformableTransformer(
        num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=16, two_stage_num_proposals=4,
    ).eval()
    class_embed, bbox_embed = build_detection_heads(256, 1, 2)
    with torch.no_grad():
        for head in bbox_embed:
            head.layers[-1].weight.normal_(0, 0.01)
    srcs, masks, pos = _tiny_inputs(1, [(4, 4), (2, 2), (1, 1), (1, 1)], [(4, 4)])
    query = torch.randn(4, 256)
    out = transformer(srcs, masks, pos, query, class_embed, bbox_embed)
    _, boxes, _ = predict_per_layer(out, class_embed, bbox_embed)
    boxes[1].sum().backward()  # only layer 1's boxes
    assert bbox_embed[0].layers[-1].weight.grad.abs().sum() > 0
    # without look-forward-twice layer 0's head is cut off from layer 1's loss
    bbox_embed.zero_grad(set_to_none=True)
    transformer.decoder.look_forward_twice = False
    out = transformer(srcs, masks, pos, query, class_embed, bbox_embed)
    assert not out.inter_references.requires_grad


def test_dtype_follows_the_inputs():
    g = golden("golden-deformable-transformer")
    transformer, class_embed, bbox_embed, query = _golden_setup()
    i = g.inputs
    feats = [[i[f"{k}.{l}"] for l in range(4)] for k in ("srcs", "pos_embeds")]
    masks = [i[f"masks.{l}"] for l in range(4)]
    for dtype in (torch.float64, torch.bfloat16):
        t = DeformableTransformer(
            num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64, two_stage_num_proposals=6
        ).eval()
        t.load_state_dict(transformer.state_dict())
        ce, be = build_detection_heads(256, 1, 2)
        ce.load_state_dict(class_embed.state_dict())
        be.load_state_dict(bbox_embed.state_dict())
        t, ce, be = t.to(dtype), ce.to(dtype), be.to(dtype)
        with torch.no_grad():
            out = t([s.to(dtype) for s in feats[0]], masks, [p.to(dtype) for p in feats[1]], query.to(dtype), ce, be)
            logits, boxes, _ = predict_per_layer(out, ce, be)
        assert out.hs.dtype == dtype and out.memory.dtype == dtype
        assert torch.isfinite(boxes).all() and torch.isfinite(logits).all()
        if dtype == torch.float64:  # bf16 may legitimately select other proposals
            assert max_abs_diff(logits, g.out("pred_logits_per_layer")) <= 1e-4
            assert max_abs_diff(boxes, g.out("pred_boxes_per_layer")) <= 1e-5


def test_narrow_d_model_builds_runs_and_trains():
    """d_model 128 (the demo width): proposal embedding of 4 x 64 features, pos_trans 256 -> 256."""
    torch.manual_seed(2)
    d, num_dec, queries = 128, 2, 6
    transformer = DeformableTransformer(
        d_model=d, num_encoder_layers=1, num_decoder_layers=num_dec, dim_feedforward=64, two_stage_num_proposals=queries,
    ).train()
    assert transformer.pos_trans.weight.shape == (2 * d, 2 * d) and transformer.pos_trans_norm.weight.shape == (2 * d,)
    assert transformer.level_embed.shape == (4, d)
    class_embed, bbox_embed = build_detection_heads(d, 1, num_dec)
    query_embed = nn.Embedding(queries, d)
    with torch.no_grad():
        for p in [*transformer.parameters(), *bbox_embed.parameters()]:
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.01)
    shapes = [(8, 10), (4, 5), (2, 3), (1, 2)]
    srcs, masks, pos = _tiny_inputs(2, shapes, [(8, 10), (5, 9)], d_model=d)
    out = transformer(srcs, masks, pos, query_embed.weight, class_embed, bbox_embed)
    s = sum(h * w for h, w in shapes)
    assert out.hs.shape == (num_dec, 2, queries, d) and out.memory.shape == (2, s, d)
    assert out.inter_references.shape == (num_dec, 2, queries, 4)
    logits, boxes, _ = predict_per_layer(out, class_embed, bbox_embed)
    assert torch.isfinite(logits).all() and torch.isfinite(boxes).all()
    coords = out.enc_outputs_coord_unact
    (logits.sum() + boxes.sum() + out.enc_outputs_class.sum() + coords[torch.isfinite(coords)].sum()).backward()
    named = [*transformer.named_parameters(), ("query_embed", query_embed.weight)]
    missing = [k for k, p in named if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_proposal_embedding_width_follows_d_model():
    from uniref.modeling.transformer.two_stage import proposal_pos_embed

    boxes = torch.randn(2, 3, 4)
    assert proposal_pos_embed(boxes, 64).shape == (2, 3, 256)
    # the official width is the d_model=256 case of the same formula
    assert torch.equal(proposal_pos_embed(boxes), proposal_pos_embed(boxes, 256 // 2))
    with pytest.raises(ValueError, match="divisible by 4"):
        DeformableTransformer(d_model=130, nhead=2)
