from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uniref.data.datasets import FSS1000Dataset, InconsistentDataError, MissingDataError, build_dataset

NUMBERS = (1, 2, 3, 4, 10, 11)  # "10" sorts before "2" as a string


def _make_class(folder: Path, write, numbers=NUMBERS) -> None:
    for n in numbers:
        write.jpg(folder / f"{n}.jpg", seed=n)
        mask = np.zeros((write.H, write.W), np.uint8)
        mask[: n + 1, :] = 255  # n+1 foreground rows: identifies the image
        Image.fromarray(mask).save(folder / f"{n}.png")


@pytest.fixture
def fss_root(tmp_path: Path, write) -> Path:
    root = tmp_path / "fss-1000"
    for name in ("ab_wheel", "bee", "zebra"):
        _make_class(root / "images" / name, write)
    (root / "val.txt").write_text("ab_wheel\nzebra\n\n")
    return root


def test_val_split_one_shot_lexicographic(fss_root: Path) -> None:
    ds = FSS1000Dataset(fss_root, "val", shots=1)
    assert ds.classes == ["ab_wheel", "zebra"]
    assert len(ds) == 12
    assert [s.sample_id for s in ds][:6] == [f"ab_wheel/{n}" for n in (1, 10, 11, 2, 3, 4)]
    query = ds[0]  # ab_wheel/1: first other image in string order is 10
    assert query.info["support_names"] == ("ab_wheel/10",)
    assert query.supports[0].image_path == fss_root / "images/ab_wheel/10.jpg"
    assert query.load_mask().sum() == 2 * 48
    assert query.supports[0].load_mask().sum() == 11 * 48
    assert query.load_image().shape == (32, 48, 3) and query.expression is None


def test_five_shot_and_natural_order(fss_root: Path) -> None:
    five = FSS1000Dataset(fss_root, "val", shots=5)
    by_id = {s.sample_id: s for s in five}
    assert by_id["zebra/2"].info["support_names"] == tuple(f"zebra/{n}" for n in (1, 10, 11, 3, 4))
    assert len(by_id["zebra/2"].supports) == 5
    natural = FSS1000Dataset(fss_root, "val", shots=5, order="natural")
    by_id = {s.sample_id: s for s in natural}
    assert by_id["zebra/2"].info["support_names"] == tuple(f"zebra/{n}" for n in (1, 3, 4, 10, 11))


def test_split_file_locations(fss_root: Path, tmp_path: Path) -> None:
    (fss_root / "val.txt").unlink()
    (fss_root / "splits" / "fss").mkdir(parents=True)
    (fss_root / "splits" / "fss" / "val.txt").write_text("bee\n")
    assert FSS1000Dataset(fss_root).classes == ["bee"]
    explicit = tmp_path / "my_split.txt"
    explicit.write_text("zebra\nbee\n")
    assert build_dataset("fss1000", fss_root, split_file=explicit).classes == ["zebra", "bee"]
    assert FSS1000Dataset(fss_root, "all").classes == ["ab_wheel", "bee", "zebra"]
    # Class folders directly under the root (HSNet layout) work too.
    assert len(FSS1000Dataset(fss_root / "images", "val", split_file=explicit)) == 12


def test_mask_threshold_matches_official(tmp_path: Path, write) -> None:
    folder = tmp_path / "fss" / "cls"
    _make_class(folder, write, numbers=(1, 2))
    rgb = np.zeros((write.H, write.W, 3), np.uint8)
    rgb[0, 0] = 128  # grey 128 -> 128/255 > 0.5
    rgb[0, 1] = 127  # grey 127 -> background
    Image.fromarray(rgb).save(folder / "1.png")
    mask = FSS1000Dataset(tmp_path / "fss", "all")[0].load_mask()
    assert mask[0, 0] and not mask[0, 1] and mask.sum() == 1


def test_missing_split_file_names_candidates(fss_root: Path) -> None:
    (fss_root / "val.txt").unlink()
    with pytest.raises(MissingDataError, match=r"(?s)val\.txt.*HSNet"):
        FSS1000Dataset(fss_root)


def test_image_without_mask(fss_root: Path) -> None:
    (fss_root / "images" / "zebra" / "3.png").unlink()
    with pytest.raises(MissingDataError, match=r"zebra/3\.jpg has no mask 3\.png"):
        FSS1000Dataset(fss_root)


def test_missing_class_folder_and_too_few_images(fss_root: Path, write) -> None:
    (fss_root / "val.txt").write_text("ab_wheel\nnot_a_class\n")
    with pytest.raises(MissingDataError, match="not_a_class"):
        FSS1000Dataset(fss_root)
    (fss_root / "val.txt").write_text("ab_wheel\n")
    with pytest.raises(InconsistentDataError, match="6 images; 6-shot"):
        FSS1000Dataset(fss_root, shots=6)
    with pytest.raises(ValueError, match="unknown FSS-1000 split"):
        FSS1000Dataset(fss_root, "dev")
