"""The padding of the square SAM input and of its embedding grid, with and without the official bug."""

import torch

from uniref.modeling.sam.padding import embedding_padding_mask, pad_to_square, resize_longest_side


def test_grid_padding_marks_cells_that_hold_only_padding():
    sizes = torch.tensor([[1024, 768], [700, 1024], [17, 1024]])
    mask = embedding_padding_mask(sizes, 64, 16)
    assert mask.shape == (3, 64, 64)
    # 768 px = 48 whole columns; 700 px = 43.75 rows -> 44 rows hold some image.
    assert (~mask[0]).sum() == 64 * 48 and not mask[0, :, 47].any() and mask[0, :, 48].all()
    assert (~mask[1]).sum() == 44 * 64 and not mask[1, 43].any() and mask[1, 44].all()
    assert (~mask[2]).sum() == 2 * 64


def test_official_bug_never_masks_real_sized_images():
    sizes = torch.tensor([[1024, 768], [700, 1024]])
    assert not embedding_padding_mask(sizes, 64, 16, official_padding_bug=True).any()
    # The official comparison of grid indices with pixel sizes only bites below 64 pixels.
    tiny = embedding_padding_mask(torch.tensor([[40, 1024]]), 64, 16, official_padding_bug=True)
    assert (~tiny).sum() == 40 * 64


def test_resize_and_pad():
    x = torch.rand(3, 300, 200)
    y = resize_longest_side(x, 1024)
    assert y.shape == (3, 1024, 683)
    z = pad_to_square(y[None], 1024)
    assert z.shape == (1, 3, 1024, 1024) and (z[..., 683:] == 0).all()
