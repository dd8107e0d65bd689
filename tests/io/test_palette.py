import numpy as np
import pytest

from uniref.io.palette import davis_palette, davis_palette_flat, label_colors


def test_first_entries_are_the_davis_colours():
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    expected = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
                (128, 128, 128), (64, 0, 0), (192, 0, 0)]
    assert [tuple(c) for c in palette[:10].tolist()] == expected
    assert tuple(palette[255].tolist()) == (224, 224, 192)


def test_palette_colours_are_distinct_and_flat_form_matches():
    palette = davis_palette()
    assert len({tuple(c) for c in palette.tolist()}) == 256
    assert davis_palette_flat() == palette.reshape(-1).tolist()
    assert davis_palette(4).shape == (4, 3)


def test_label_colors_and_range_error():
    ids = np.array([[0, 1], [2, 255]])
    colors = label_colors(ids)
    assert colors.shape == (2, 2, 3)
    assert tuple(colors[0, 1]) == (128, 0, 0)
    with pytest.raises(ValueError, match="0..255"):
        label_colors(np.array([256]))
