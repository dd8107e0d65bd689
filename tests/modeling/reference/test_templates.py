import pytest
import torch

from reference_data import golden, max_abs_diff
from uniref.modeling.reference.features import ReferenceFeatures
from uniref.modeling.reference.mask_encoder import MaskReferenceEncoder
from uniref.modeling.reference.templates import aggregate_shots, concat_references, mask_reference, masked_mean

PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def _encoder() -> MaskReferenceEncoder:
    encoder = MaskReferenceEncoder().eval()
    encoder.load_state_dict(golden("full-tiny-public").weights_under("value_encoder."), strict=True)
    return encoder


def _assert_dict(ref: ReferenceFeatures, g, prefix: str, tol: float = 1e-5) -> None:
    assert ref.num_levels == 4
    for l in range(4):
        assert max_abs_diff(ref.refs[l], g.out(f"{prefix}.refs.{l}")) <= tol
        assert max_abs_diff(ref.values[l], g.out(f"{prefix}.ref_values.{l}")) <= tol
        assert max_abs_diff(ref.embeds[l], g.out(f"{prefix}.ref_embeds.{l}")) <= tol
        assert torch.equal(ref.padding_mask[l], g.out(f"{prefix}.masks.{l}"))


@pytest.fixture(scope="module")
def golden_template() -> ReferenceFeatures:
    g = golden("golden-value-encoder")
    srcs = [g.inputs[f"srcs_ref.{l}"] for l in range(4)]
    masks = [g.inputs[f"masks_ref.{l}"] for l in range(4)]
    with torch.no_grad():
        return mask_reference(_encoder(), g.inputs["samples_tensors"], g.inputs["ref_masks"], srcs, masks)


def test_golden_template(golden_template):
    g = golden("golden-value-encoder")
    _assert_dict(golden_template, g, "outputs.template")
    # The two images have different padding, so the padding masks (and the masked mean) matter.
    assert not torch.equal(golden_template.padding_mask[0][0], golden_template.padding_mask[0][1])


def test_golden_template_aggregated(golden_template):
    g = golden("golden-value-encoder")
    agg = aggregate_shots(golden_template)
    assert agg.batch_size == 1
    _assert_dict(agg, g, "outputs.template_aggregate")


def _vos_frame0():
    full = golden("full-tiny-public")
    frame = full.inputs["vos.frames_preprocessed"][0].float()
    h, w = frame.shape[-2:]
    image = torch.zeros(1, 3, 160, 192)
    image[0, :, :h, :w] = (frame - PIXEL_MEAN) / PIXEL_STD
    srcs = [full.out(f"vos.ref_backbone0.srcs.{l}") for l in range(4)]
    masks = [full.out(f"vos.ref_backbone0.masks.{l}") for l in range(4)]
    return full, image, srcs, masks


def test_full_tiny_vos_init_templates():
    """Templates 0 and 1 are built from frame 0, whose reference features are recorded."""
    full, image, srcs, masks = _vos_frame0()
    encoder = _encoder()
    with torch.no_grad():
        for i in range(2):
            mask = full.out(f"vos.template{i}.input_mask")
            ref = mask_reference(encoder, image, mask, srcs, masks)
            for l in range(4):
                assert max_abs_diff(ref.embeds[l], full.out(f"vos.template{i}.ref_embeds.{l}")) <= 1e-5
                assert torch.equal(ref.padding_mask[l], full.out(f"vos.template{i}.masks.{l}"))
                if i == 0:  # only template 0 stores its values
                    assert max_abs_diff(ref.values[l], full.out(f"vos.template0.ref_values.{l}")) <= 1e-5


def test_full_tiny_vos_objects_batched():
    """Both objects of frame 0 in one batch give the same templates as one at a time."""
    full, image, srcs, masks = _vos_frame0()
    encoder = _encoder()
    obj_masks = torch.cat([full.out(f"vos.template{i}.input_mask") for i in range(2)])
    with torch.no_grad():
        ref = mask_reference(encoder, image.expand(2, -1, -1, -1), obj_masks,
                             [s.expand(2, -1, -1, -1) for s in srcs], [m.expand(2, -1, -1) for m in masks])
    assert ref.batch_size == 2
    for l in range(4):
        # batch-size-dependent convolution algorithms: not bitwise, but within float tolerance
        assert max_abs_diff(ref.values[l][:1], full.out(f"vos.template0.ref_values.{l}")) <= 1e-4
        for i in range(2):
            assert max_abs_diff(ref.embeds[l][i:i + 1], full.out(f"vos.template{i}.ref_embeds.{l}")) <= 1e-5
    assert max_abs_diff(ref.values[0][0], ref.values[0][1]) > 1e-2  # different objects, different values


def _random_ref(batch: int, tokens: list[int], seed: int) -> ReferenceFeatures:
    g = torch.Generator().manual_seed(seed)
    refs = [torch.randn(batch, n, 4, generator=g) for n in tokens]
    values = [torch.randn(batch, n, 4, generator=g) for n in tokens]
    pads = [torch.rand(batch, n, generator=g) < 0.3 for n in tokens]
    embeds = [torch.randn(batch, 4, generator=g) for _ in tokens]
    return ReferenceFeatures(refs, values, pads, embeds)


def test_aggregate_shots_batched_over_objects():
    shots = 3
    ref = _random_ref(2 * shots, [5, 2], seed=0)
    agg = aggregate_shots(ref, num_shots=shots)
    assert agg.batch_size == 2
    for b in range(2):
        one = aggregate_shots(ref.index_select(list(range(b * shots, (b + 1) * shots))))
        for l in range(2):
            assert agg.refs[l].shape == (2, shots * ref.refs[l].shape[1], 4)
            assert torch.equal(agg.refs[l][b], one.refs[l][0])
            assert torch.equal(agg.values[l][b], one.values[l][0])
            assert torch.equal(agg.padding_mask[l][b], one.padding_mask[l][0])
            assert torch.allclose(agg.embeds[l][b], one.embeds[l][0])
    # tokens in shot order
    assert torch.equal(agg.refs[0][1, 5:10], ref.refs[0][4])
    assert torch.allclose(agg.embeds[1][1], ref.embeds[1][3:6].mean(0))
    with pytest.raises(ValueError, match="groups of 4"):
        aggregate_shots(ref, num_shots=4)


def test_single_shot_aggregation_is_identity():
    ref = _random_ref(1, [3], seed=1)
    agg = aggregate_shots(ref)
    assert torch.equal(agg.refs[0], ref.refs[0]) and torch.equal(agg.embeds[0], ref.embeds[0])


def test_concat_references_batched_over_objects():
    a = _random_ref(3, [4, 2], seed=2)
    b = _random_ref(3, [4, 2], seed=3)
    c = concat_references(a, b)
    assert c.batch_size == 3 and c.num_levels == 2
    for l in range(2):
        assert torch.equal(c.refs[l][:, :4 if l == 0 else 2], a.refs[l])
        assert torch.equal(c.values[l][:, -(4 if l == 0 else 2):], b.values[l])
        assert torch.equal(c.padding_mask[l], torch.cat([a.padding_mask[l], b.padding_mask[l]], 1))
        assert torch.allclose(c.embeds[l], (a.embeds[l] + b.embeds[l]) / 2)
    with pytest.raises(ValueError):
        concat_references(a, _random_ref(2, [4, 2], seed=4))


def test_masked_mean_ignores_padding():
    tokens = torch.tensor([[[1.0], [3.0], [100.0]]])
    pad = torch.tensor([[False, False, True]])
    assert masked_mean(tokens, pad).item() == 2.0
