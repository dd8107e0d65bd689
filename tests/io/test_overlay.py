import numpy as np
import pytest

from uniref.io.masks import MaskSizeError
from uniref.io.overlay import overlay_masks
from uniref.io.palette import davis_palette


@pytest.fixture
def scene():
    image = np.full((40, 60, 3), 100, np.uint8)
    labels = np.zeros((40, 60), np.uint8)
    labels[5:25, 5:25] = 1
    labels[20:38, 30:58] = 2
    return image, labels


def test_fill_blends_the_palette_colour(scene):
    image, labels = scene
    out = overlay_masks(image, labels, alpha=0.5, outline=0, show_ids=False)
    expected = np.rint(0.5 * 100 + 0.5 * davis_palette()[1].astype(float))
    np.testing.assert_array_equal(out[15, 15], expected)
    np.testing.assert_array_equal(out[0, 0], image[0, 0])  # background untouched


def test_outline_in_full_colour_and_interior_blended(scene):
    image, labels = scene
    out = overlay_masks(image, labels, alpha=0.5, outline=1, show_ids=False)
    np.testing.assert_array_equal(out[5, 15], davis_palette()[1])  # top edge of object 1
    assert not np.array_equal(out[15, 15], davis_palette()[1])


def test_ids_legend_and_caption_draw_text(scene):
    image, labels = scene
    plain = overlay_masks(image, labels, show_ids=False)
    with_ids = overlay_masks(image, labels, show_ids=True)
    assert (with_ids != plain).any()
    with_text = overlay_masks(image, {1: labels == 1}, legend={1: "the square"}, caption="a caption")
    assert with_text.shape == (40, 60, 3) and with_text.dtype == np.uint8
    assert (with_text[-5:] != overlay_masks(image, {1: labels == 1}, show_ids=False)[-5:]).any()


def test_size_mismatch_is_reported(scene):
    image, labels = scene
    with pytest.raises(MaskSizeError, match="40x61"):
        overlay_masks(image, np.zeros((40, 61), np.uint8))
