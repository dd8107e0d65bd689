import math

import pytest
import torch

from reference_data import golden, max_abs_diff
from uniref.layers.position_encoding import PositionEmbeddingSine


def test_matches_official_deformable_transformer_inputs():
    g = golden("golden-deformable-transformer")
    pe = PositionEmbeddingSine(128, temperature=10000, normalize=True, scale=2 * math.pi)
    assert g.inputs["masks.0"][1].any(), "the golden should exercise padding"
    for level in range(4):
        mask = g.inputs[f"masks.{level}"]
        out = pe(mask)
        expected = g.inputs[f"pos_embeds.{level}"]
        assert out.shape == expected.shape and out.dtype == torch.float32
        assert max_abs_diff(out, expected) <= 1e-6, level


def test_layout_and_padding_invariance():
    pe = PositionEmbeddingSine(16)
    mask = torch.zeros(1, 6, 7, dtype=torch.bool)
    out = pe(mask)
    assert out.shape == (1, 32, 6, 7)
    # the first half encodes y (constant along x), the second half x (constant along y)
    assert torch.equal(out[0, :16, :, 0], out[0, :16, :, 3])
    assert torch.equal(out[0, 16:, 0, :], out[0, 16:, 4, :])
    assert not torch.equal(out[0, 0, 0, 0], out[0, 0, 1, 0])
    # channel 1 is cos of the same argument
    torch.testing.assert_close(out[0, 0] ** 2 + out[0, 1] ** 2, torch.ones(6, 7))

    padded = torch.ones(1, 9, 11, dtype=torch.bool)
    padded[:, :6, :7] = False
    out_padded = pe(padded)
    # normalisation uses the count of valid pixels, so the valid area's code is unchanged by padding
    torch.testing.assert_close(out_padded[:, :, :6, :7], out, rtol=0, atol=1e-6)


def test_normalised_range():
    pe = PositionEmbeddingSine(2, temperature=10000)
    out = pe(torch.zeros(1, 4, 4, dtype=torch.bool))
    # with 2 features per axis the first is sin((c - 0.5) / (n + eps) * 2pi) with c = 1..n
    y = torch.arange(1, 5, dtype=torch.float32)
    expected = torch.sin((y - 0.5) / (4 + 1e-6) * 2 * math.pi)
    torch.testing.assert_close(out[0, 0, :, 0], expected)


def test_scale_requires_normalize():
    with pytest.raises(ValueError):
        PositionEmbeddingSine(8, normalize=False, scale=1.0)
