"""Proof 4: the four tasks run end to end on CPU with the B-size config (256-pixel input, tiny BERT)."""

import pytest
import torch

from sam_test_utils import SMALL_IMG, TINY_TEXT
from uniref.modeling.reference.templates import aggregate_shots, concat_references
from uniref.modeling.sam import UniRefSamOutput

G = SMALL_IMG // 16  # embedding grid side


@pytest.fixture(scope="module")
def model(small_model):
    # A trained-looking UniFusion: the zero-initialised adaLN would make fusion the identity.
    torch.manual_seed(5)
    with torch.no_grad():
        small_model.fusion.adaLN_modulation[1].weight.normal_(0, 0.05)
        small_model.fusion.adaLN_modulation[1].bias.normal_(0, 0.05)
    return small_model


@pytest.fixture(scope="module")
def scene(model):
    """Four images of different aspect ratios, their embeddings, masks and a tokenised sentence."""
    torch.manual_seed(6)
    shapes = ((3, 90, 120), (3, 120, 60), (3, 64, 64), (3, 80, 100))
    images = [torch.randint(0, 256, s, dtype=torch.uint8) for s in shapes]
    batch, sizes = model.prepare_images(images)
    with torch.no_grad():
        emb = model.encode_image(batch)
    masks = model.prepare_masks([torch.rand(im.shape[1:]) > 0.5 for im in images], sizes)
    ids = torch.randint(1, TINY_TEXT["vocab_size"], (1, 9))
    attn = torch.ones(1, 9, dtype=torch.long)
    attn[0, 6:] = 0
    return batch, sizes, emb, masks, ids, attn


def _check(out: UniRefSamOutput, b: int) -> None:
    assert out.pred_masks.shape == (b, 1, SMALL_IMG, SMALL_IMG)
    assert out.low_res_masks.shape == (b, 1, SMALL_IMG // 4, SMALL_IMG // 4)
    assert out.scores.shape == (b,)
    assert out.image_embeddings.shape == (b, 256, G, G)
    for t in (out.pred_masks, out.low_res_masks, out.scores):
        assert torch.isfinite(t).all()


def test_inputs(scene):
    batch, sizes, emb, masks, _, _ = scene
    assert batch.shape == (4, 3, SMALL_IMG, SMALL_IMG) and emb.shape == (4, 256, G, G)
    assert sizes.tolist() == [[192, 256], [256, 128], [256, 256], [205, 256]]
    assert masks.shape == (4, 1, SMALL_IMG, SMALL_IMG) and masks[1, :, :, 128:].sum() == 0


@torch.no_grad()
def test_language_reference_ris(model, scene):
    batch, _, emb, _, ids, attn = scene
    lang = model.encode_text(ids, attn)
    out = model.decode(emb[:1], lang=lang)
    _check(out, 1)
    # forward() is encode_image + decode
    torch.testing.assert_close(model(batch[:1], lang=lang).pred_masks, out.pred_masks, rtol=0, atol=1e-4)


@torch.no_grad()
def test_mask_reference_fss_and_vos(model, scene):
    batch, sizes, emb, masks, _, _ = scene
    ref = model.encode_mask(batch[1:2], masks[1:2], emb[1:2], sizes[1:2])
    assert ref.num_levels == 1 and ref.refs[0].shape == (1, G * G, 256)
    # Image 1 is 256x128 inside the square: the right half of the grid is padding.
    assert ref.padding_mask[0].sum() == G * G // 2
    valid = emb[1, :, :, : G // 2].flatten(1).mean(1)
    torch.testing.assert_close(ref.embeds[0][0], valid)
    out = model.decode(emb[:1], mask=ref)
    _check(out, 1)
    # VOS: first + previous frame references joined along the token axis.
    prev = model.encode_mask(batch[2:3], masks[2:3], emb[2:3], sizes[2:3])
    both = concat_references(ref, prev)
    assert both.refs[0].shape == (1, 2 * G * G, 256)
    _check(model.decode(emb[:1], mask=both), 1)


@torch.no_grad()
def test_language_and_mask_rvos(model, scene):
    _, sizes, emb, masks, ids, attn = scene
    batch = scene[0]
    lang = model.encode_text(ids, attn)
    ref = model.encode_mask(batch[3:4], masks[3:4], emb[3:4], sizes[3:4])
    out = model.decode(emb[:1], lang=lang, mask=ref)
    _check(out, 1)
    # The sentence embedding is the prompt token when language is present; the mask one can be chosen.
    other = model.decode(emb[:1], lang=lang, mask=ref, prompt_from="mask")
    assert not torch.allclose(out.pred_masks, other.pred_masks)
    with pytest.raises(ValueError):
        model.decode(emb[:1])


@torch.no_grad()
def test_k_shot_aggregated_fss(model, scene):
    batch, sizes, emb, masks, _, _ = scene
    shots = model.encode_mask(batch[1:4], masks[1:4], emb[1:4], sizes[1:4])
    agg = aggregate_shots(shots)  # 3 shots of one query
    assert agg.refs[0].shape == (1, 3 * G * G, 256) and agg.padding_mask[0].shape == (1, 3 * G * G)
    _check(model.decode(emb[:1], mask=agg), 1)
    # Two objects at once (one query image per object).
    _check(model.decode(emb[:1].expand(3, -1, -1, -1), mask=shots), 3)


@torch.no_grad()
def test_official_padding_bug_switch(model, scene):
    batch, sizes, emb, masks, _, _ = scene
    model.config.official_padding_bug = True
    try:
        ref = model.encode_mask(batch[1:2], masks[1:2], emb[1:2], sizes[1:2])
    finally:
        model.config.official_padding_bug = False
    assert not ref.padding_mask[0].any()
    torch.testing.assert_close(ref.embeds[0][0], emb[1].flatten(1).mean(1))
