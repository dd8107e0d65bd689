import numpy as np
import pytest
import torch
from PIL import Image

from uniref.io.images import ImageReadError, image_size, load_image


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)


def test_path_pil_array_and_tensor_agree(tmp_path, rgb):
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    for source in (path, str(path), Image.fromarray(rgb), rgb, torch.from_numpy(rgb),
                   torch.from_numpy(rgb).permute(2, 0, 1)):
        out = load_image(source)
        assert out.shape == (6, 9, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, rgb)
    assert image_size(path) == (6, 9)


def test_result_is_a_copy(rgb):
    out = load_image(rgb)
    out[0, 0] = 0
    assert not np.shares_memory(out, rgb)


def test_float_gray_and_rgba_inputs(rgb):
    np.testing.assert_array_equal(load_image(rgb.astype(np.float32) / 255.0), rgb)
    np.testing.assert_array_equal(load_image(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255), rgb)
    gray = rgb[:, :, 0]
    out = load_image(gray)
    assert out.shape == (6, 9, 3) and (out == gray[:, :, None]).all()
    rgba = np.concatenate([rgb, np.full((6, 9, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(load_image(rgba), rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(gray)), np.repeat(gray[:, :, None], 3, 2))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")


def test_corrupt_and_truncated_files_name_the_path(tmp_path, rgb):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match="bad.png"):
        load_image(bad)
    good = tmp_path / "good.jpg"
    Image.fromarray(np.tile(rgb, (8, 8, 1))).save(good, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        load_image(cut)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((3, 5, 6), np.uint8), r"\(3, 5, 6\)"),
        (np.zeros((2, 2, 2, 3), np.uint8), r"\(2, 2, 2, 3\)"),
        (np.full((4, 4, 3), 1.5, np.float32), "0..1"),
        (np.full((4, 4, 3), 300, np.int32), "0..255"),
        (np.zeros((4, 4), bool), "boolean"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_bad_arrays_name_the_shape_or_range(array, message):
    with pytest.raises(ImageReadError, match=message):
        load_image(array)


def test_bad_tensor_and_type():
    with pytest.raises(ImageReadError, match=r"\(5, 4, 7\)"):
        load_image(torch.zeros(5, 4, 7))
    with pytest.raises(TypeError, match="int"):
        load_image(3)
