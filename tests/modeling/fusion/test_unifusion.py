import json

import pytest
import torch

from reference_data import golden, max_abs_diff, reference_dir
from uniref.modeling.fusion import UniFusion
from uniref.modeling.fusion.unifusion import UniMultiHeadAttention, reference_attention, sdpa_attention
from uniref.modeling.reference.features import ReferenceFeatures

CASES = ("lang", "mask", "both")
# (bf16 attention, output prefix). The float32 variant is the same module with the bf16 casts removed.
PRECISIONS = ((True, "outputs"), (False, "outputs_fp32attn"))


def _golden_module(*, bf16: bool, fused: bool) -> tuple[UniFusion, object]:
    g = golden("golden-unifusion")
    cfg = g.meta["config"]
    fusion = UniFusion(
        cfg["MODEL.DDETRS.HIDDEN_DIM"], cfg["FUSE_CONFIG.NHEADS"], cfg["FUSE_CONFIG.HEAD_DIM"],
        bf16_attention=bf16, fused_attention=fused,
    ).eval()
    fusion.load_state_dict(g.weights, strict=True)
    return fusion, g


def _golden_refs(g) -> tuple[list[torch.Tensor], ReferenceFeatures, ReferenceFeatures]:
    i = g.inputs
    srcs = [i[f"srcs.{l}"] for l in range(4)]
    lang = ReferenceFeatures([i["lang.refs"]], [i["lang.ref_values"]], [i["lang.masks"]], [i["lang.ref_embeds"]])
    mask = ReferenceFeatures(
        *[[i[f"mask.{k}.{l}"] for l in range(4)] for k in ("refs", "ref_values", "masks", "ref_embeds")]
    )
    return srcs, lang, mask


def _compare_case(fusion: UniFusion, g, case: str, prefix: str) -> dict[str, float]:
    srcs, lang, mask = _golden_refs(g)
    refs = {"lang": lang, "mask": mask}
    used = ("lang", "mask") if case == "both" else (case,)
    diffs = {"srcs": 0.0, "attn_out": 0.0, "adaLN_out": 0.0}
    with torch.no_grad():
        out = fusion(srcs, lang=refs["lang"] if "lang" in used else None, mask=refs["mask"] if "mask" in used else None)
        for l, o in enumerate(out):
            assert o.shape == srcs[l].shape
            diffs["srcs"] = max(diffs["srcs"], max_abs_diff(o, g.out(f"{prefix}.{case}.srcs.{l}")))
            x = srcs[l].flatten(2).transpose(1, 2)
            for kind in used:
                r, v, pad, emb = refs[kind].level(l)
                attn = fusion.attend(x, r, v, pad)
                mod = fusion.modulation(emb)
                diffs["attn_out"] = max(diffs["attn_out"], max_abs_diff(attn, g.out(f"{prefix}.{case}.attn_out.{l}.{kind}")))
                diffs["adaLN_out"] = max(diffs["adaLN_out"], max_abs_diff(mod, g.out(f"{prefix}.{case}.adaLN_out.{l}.{kind}")))
    return diffs


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bf16,prefix", PRECISIONS)
@pytest.mark.parametrize("fused", [False, True], ids=["reference_kernel", "sdpa"])
def test_golden(case, bf16, prefix, fused):
    """Module output, attention output and modulation against the official ones.

    README tolerances: bf16 attention turns last-bit differences into occasional one-step bf16 flips
    (~1e-4 here), hence 1e-3; float32 attention 1e-5. On the reference machine the reference kernel is
    bit-exact in every case, SDPA within 9e-5 (bf16) / 5e-7 (fp32).
    """
    fusion, g = _golden_module(bf16=bf16, fused=fused)
    diffs = _compare_case(fusion, g, case, prefix)
    tol = 1e-3 if bf16 else 1e-5
    assert diffs["srcs"] <= tol, diffs
    assert diffs["attn_out"] <= tol, diffs
    assert diffs["adaLN_out"] <= 1e-6, diffs


def test_bf16_and_fp32_attention_differ():
    """The bf16 switch really changes the numerics (so the two goldens test different paths)."""
    fusion, g = _golden_module(bf16=True, fused=False)
    srcs, lang, _ = _golden_refs(g)
    with torch.no_grad():
        a = fusion(srcs, lang=lang)
        fusion.bf16_attention = False
        b = fusion(srcs, lang=lang)
    assert fusion.attn.bf16 is False
    assert max(max_abs_diff(x, y) for x, y in zip(a, b)) > 1e-5
    assert max_abs_diff(b[0], g.out("outputs_fp32attn.lang.srcs.0")) <= 1e-5


def test_state_dict_equals_official_manifest():
    entries = json.loads((reference_dir() / "manifest-r50.json").read_text())["entries"]
    prefix = "detr.fusion_module."
    expected = [(e["name"][len(prefix):], tuple(e["shape"])) for e in entries if e["name"].startswith(prefix)]
    with torch.device("meta"):
        fusion = UniFusion()
    assert [(k, tuple(v.shape)) for k, v in fusion.state_dict().items()] == expected
    assert sum(p.numel() for p in fusion.parameters()) == 2_301_952


def test_init_is_identity_and_official():
    torch.manual_seed(0)
    fusion = UniFusion(64, 4, 32).eval()
    for proj in (fusion.attn.q_proj, fusion.attn.k_proj, fusion.attn.v_proj, fusion.attn.out_proj):
        assert torch.count_nonzero(proj.bias) == 0
        bound = (6 / sum(proj.weight.shape)) ** 0.5  # xavier_uniform
        assert 0.5 * bound < proj.weight.abs().max() <= bound
    assert torch.count_nonzero(fusion.adaLN_modulation[1].weight) == 0
    assert isinstance(fusion.adaLN_modulation[0], torch.nn.SiLU)
    srcs = [torch.randn(2, 64, 5, 6), torch.randn(2, 64, 3, 3)]
    lang = ReferenceFeatures([torch.randn(2, 7, 64)], [torch.randn(2, 7, 64)], [torch.zeros(2, 7, dtype=torch.bool)],
                             [torch.randn(2, 64)])
    out = fusion(srcs, lang=lang)
    assert all(torch.equal(o, s) for o, s in zip(out, srcs))


def test_no_reference_is_identity():
    fusion = UniFusion(64, 4, 32).eval()
    srcs = [torch.randn(1, 64, 4, 4)]
    assert torch.equal(fusion(srcs)[0], srcs[0])


@pytest.mark.parametrize("fused", [False, True])
def test_fully_padded_reference_contributes_only_bias(fused):
    """An entry whose keys are all padding gets a zero attention core, not NaN."""
    torch.manual_seed(0)
    fusion = UniFusion(32, 2, 16, fused_attention=fused).eval()
    x = torch.randn(2, 5, 32)
    refs = torch.randn(2, 4, 32)
    pad = torch.tensor([[True] * 4, [False, False, True, True]])
    out = fusion.attend(x, refs, refs, pad)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0], fusion.attn.out_proj.bias.expand(5, -1))
    # The valid entry must equal attention restricted to its two valid keys.
    alone = fusion.attend(x[1:], refs[1:, :2], refs[1:, :2], None)
    assert max_abs_diff(out[1], alone[0]) < 1e-5


def test_kernels_agree_and_handle_ragged_padding():
    torch.manual_seed(1)
    q = torch.randn(3, 2, 9, 8)
    k = torch.randn(3, 2, 6, 8)
    v = torch.randn(3, 2, 6, 8)
    pad = torch.tensor([[False] * 6, [False, True, False, True, False, False], [False] * 3 + [True] * 3])
    a = reference_attention(q, k, v, pad, 8**-0.5, max_scores=20)  # forces query chunking
    b = sdpa_attention(q, k, v, pad, 8**-0.5)
    assert max_abs_diff(a, b) < 1e-5
    assert max_abs_diff(a, reference_attention(q, k, v, pad, 8**-0.5)) < 1e-6  # chunking changes nothing
    # padding really is excluded
    c = reference_attention(q[2:], k[2:, :, :3], v[2:, :, :3], None, 8**-0.5)
    assert max_abs_diff(a[2:], c) < 1e-6


def test_language_reference_serves_every_level_and_branches_add():
    torch.manual_seed(2)
    fusion = UniFusion(32, 2, 16).eval()
    torch.nn.init.normal_(fusion.adaLN_modulation[1].weight, std=0.2)
    srcs = [torch.randn(1, 32, 4, 5), torch.randn(1, 32, 2, 3)]
    lang = ReferenceFeatures([torch.randn(1, 3, 32)], [torch.randn(1, 3, 32)], [torch.zeros(1, 3, dtype=torch.bool)],
                             [torch.randn(1, 32)])
    mask = ReferenceFeatures([torch.randn(1, 6, 32), torch.randn(1, 2, 32)], [torch.randn(1, 6, 32), torch.randn(1, 2, 32)],
                             [torch.zeros(1, 6, dtype=torch.bool), torch.zeros(1, 2, dtype=torch.bool)],
                             [torch.randn(1, 32), torch.randn(1, 32)])
    with torch.no_grad():
        both = fusion(srcs, lang=lang, mask=mask)
        only_l = fusion(srcs, lang=lang)
        only_m = fusion(srcs, mask=mask)
    for s, b, ol, om in zip(srcs, both, only_l, only_m):
        assert not torch.allclose(ol, s)
        assert torch.allclose(b, ol + om - s, atol=1e-5)


def test_open_gate_lets_the_reference_in_from_the_start():
    torch.manual_seed(3)
    fusion = UniFusion(32, 2, 16, gate_init=1.0).eval()
    bias = fusion.adaLN_modulation[1].bias
    assert torch.equal(bias[64:], torch.ones(32)) and torch.count_nonzero(bias[:64]) == 0
    srcs = [torch.randn(1, 32, 4, 5)]
    lang = ReferenceFeatures([torch.randn(1, 3, 32)], [torch.randn(1, 3, 32)], [torch.zeros(1, 3, dtype=torch.bool)],
                             [torch.randn(1, 32)])
    with torch.no_grad():
        out = fusion(srcs, lang=lang)[0]
        attn = fusion.attend(srcs[0].flatten(2).transpose(1, 2), *lang.level(0)[:3])
    # gate 1, shift and scale 0: the block adds the attention output as it is
    torch.testing.assert_close(out, srcs[0] + attn.transpose(1, 2).reshape(1, 32, 4, 5))


@pytest.mark.parametrize("fused", [False, True], ids=["reference_kernel", "sdpa"])
def test_one_frame_against_a_batch_of_references_equals_its_copies(fused):
    """The video engine fuses one frame with every object's reference without copying the frame."""
    torch.manual_seed(4)
    fusion = UniFusion(32, 2, 16, fused_attention=fused, gate_init=1.0).eval()
    torch.nn.init.normal_(fusion.adaLN_modulation[1].weight, std=0.2)
    srcs = [torch.randn(1, 32, 4, 5), torch.randn(1, 32, 2, 3)]
    pad = torch.zeros(3, 8, dtype=torch.bool)
    pad[:, 6:] = True  # the same padding for every object, as the frames of one video have
    mask = ReferenceFeatures([torch.randn(3, 8, 32)] * 2, [torch.randn(3, 8, 32)] * 2, [pad, pad],
                             [torch.randn(3, 32)] * 2)
    with torch.no_grad():
        shared = fusion(srcs, mask=mask)
        copies = fusion([s.expand(3, -1, -1, -1) for s in srcs], mask=mask)
    for a, b in zip(shared, copies):
        assert a.shape == (3, 32) + tuple(b.shape[2:]) and torch.equal(a, b)


@pytest.mark.parametrize("first_padded", [False, True])
def test_module_keeps_ragged_padding_whatever_entry_comes_first(first_padded):
    """Entries with different numbers of valid keys keep their mask, also when the first one has no padding."""
    torch.manual_seed(5)
    attn = UniMultiHeadAttention(16, 2, 8, 0.0, bf16=False, fused=False).eval()
    query, key, value = torch.randn(2, 5, 16), torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 3:] = True
    if first_padded:
        query, key, value, pad = query.flip(0), key.flip(0), value.flip(0), pad.flip(0)
    padded_row = 0 if first_padded else 1
    with torch.no_grad():
        both = attn(query, key, value, pad)
        alone = attn(query[padded_row:padded_row + 1], key[padded_row:padded_row + 1, :3],
                     value[padded_row:padded_row + 1, :3], None)
    assert max_abs_diff(both[padded_row:padded_row + 1], alone) < 1e-6
