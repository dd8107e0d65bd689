import numpy as np
import pytest
import torch
from PIL import Image

from uniref.io.masks import (
    MaskError,
    MaskSizeError,
    labels_to_masks,
    load_binary_mask,
    load_label_map,
    masks_to_labels,
    read_png_indices,
    save_binary_png,
    save_label_png,
    validate_mask_size,
)
from uniref.io.palette import davis_palette


@pytest.fixture
def labels():
    out = np.zeros((5, 7), np.uint8)
    out[1:3, 1:3] = 1
    out[3:, 4:] = 2
    out[0, 6] = 255
    return out


def test_palette_png_round_trip(tmp_path, labels):
    path = save_label_png(tmp_path / "00000.png", labels)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    np.testing.assert_array_equal(load_label_map(path), labels)
    np.testing.assert_array_equal(read_png_indices(path), labels)
    assert load_label_map(path).dtype == np.uint8


def test_binary_png_is_L_0_255_and_reads_back(tmp_path, labels):
    path = save_binary_png(tmp_path / "m.png", labels == 2)
    with Image.open(path) as image:
        assert image.mode == "L"
        assert set(np.unique(np.asarray(image)).tolist()) == {0, 255}
    np.testing.assert_array_equal(load_binary_mask(path), labels == 2)
    # A 0/255 greyscale PNG read as a label map is one object with id 1.
    np.testing.assert_array_equal(load_label_map(path), (labels == 2).astype(np.uint8))


def test_binary_reading_any_nonzero_is_foreground(tmp_path, labels):
    save_label_png(tmp_path / "p.png", labels)
    np.testing.assert_array_equal(load_binary_mask(tmp_path / "p.png"), labels != 0)
    np.testing.assert_array_equal(load_binary_mask(labels), labels != 0)
    np.testing.assert_array_equal(load_binary_mask(torch.from_numpy(labels)), labels != 0)
    probs = np.where(labels == 1, 0.9, 0.2).astype(np.float32)
    np.testing.assert_array_equal(load_binary_mask(probs), labels == 1)


def test_rgb_rendering_of_the_palette_maps_back_to_ids(tmp_path, labels):
    rgb = davis_palette()[labels]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_label_map(tmp_path / "rgb.png"), labels)
    odd = rgb.copy()
    odd[0, 0] = (1, 2, 3)
    Image.fromarray(odd).save(tmp_path / "odd.png")
    with pytest.raises(MaskError, match="odd.png"):
        load_label_map(tmp_path / "odd.png")


def test_array_inputs():
    assert load_label_map(np.array([[0, 3], [7, 0]], np.int64)).tolist() == [[0, 3], [7, 0]]
    assert load_label_map(np.array([[True, False]])).tolist() == [[1, 0]]
    assert load_label_map(np.array([[0.7, 0.2]])).tolist() == [[1, 0]]


def test_palette_ids_out_of_range(tmp_path):
    with pytest.raises(MaskError, match="out of range"):
        load_label_map(np.array([[0, 256]]))
    with pytest.raises(MaskError, match="out of range"):
        load_label_map(np.array([[-1, 0]]))
    with pytest.raises(MaskError, match="out of range"):
        save_label_png(tmp_path / "x.png", np.array([[0, 300]]))
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(MaskError, match="out of range"):
        masks_to_labels({256: np.ones((2, 2), bool)})


def test_size_validation_names_both_sizes():
    with pytest.raises(MaskSizeError, match=r"4x5 .* 6x7"):
        validate_mask_size(np.zeros((4, 5)), (6, 7), what="mask a.png", frame_what="frame 00000.jpg")
    validate_mask_size(np.zeros((6, 7)), (6, 7))


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.png"):
        load_label_map(tmp_path / "absent.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(MaskError, match="junk.png"):
        load_binary_mask(tmp_path / "junk.png")


def test_wrong_shapes():
    with pytest.raises(MaskError, match=r"\(2, 3, 4\)"):
        load_label_map(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(MaskError, match=r"\(2, 3, 4\)"):
        load_binary_mask(np.zeros((2, 3, 4), np.uint8))


def test_split_and_paint(labels):
    masks = labels_to_masks(labels)
    assert sorted(masks) == [1, 2, 255]
    np.testing.assert_array_equal(masks_to_labels(masks), labels)
    with pytest.raises(MaskSizeError, match="object 3"):
        masks_to_labels({1: np.ones((5, 7), bool), 3: np.ones((4, 7), bool)})


def test_writers_refuse_to_overwrite(tmp_path, labels):
    save_label_png(tmp_path / "a.png", labels)
    with pytest.raises(FileExistsError, match="a.png"):
        save_label_png(tmp_path / "a.png", labels)
    save_label_png(tmp_path / "a.png", labels * 0, overwrite=True)
    assert load_label_map(tmp_path / "a.png").max() == 0
