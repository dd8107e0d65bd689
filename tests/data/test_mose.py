from __future__ import annotations

from pathlib import Path

import pytest

from uniref.data.datasets import InconsistentDataError, MissingDataError, MOSEDataset, build_dataset


@pytest.fixture
def mose_root(tmp_path: Path, write) -> Path:
    """valid/: first-frame PNGs only, no meta. train/: every frame, meta_train.json, object 4 starts at frame 2."""
    root = tmp_path / "MOSE"
    for video in ("b_video", "a_video"):
        for t in range(4):
            write.jpg(root / "valid/JPEGImages" / video / f"{t:05d}.jpg", seed=t)
        write.label(root / "valid/Annotations" / video / "00000.png",
                    write.label_with({1: (0, 0, 5, 5), 2: (6, 6, 10, 10), 3: (12, 12, 20, 20)}))
    for t in range(4):
        write.jpg(root / "train/JPEGImages/t1" / f"{t:05d}.jpg", seed=t)
        objects = {1: (0, 0, 5, 5)}
        if t >= 2:
            objects[4] = (20, 20, 30, 30)
        write.label(root / "train/Annotations/t1" / f"{t:05d}.png", write.label_with(objects))
    write.json(root / "train/meta_train.json", {"videos": {"t1": {"objects": {"1": {}, "4": {}}}}})
    return root


def test_valid_first_frame_objects(mose_root: Path) -> None:
    ds = MOSEDataset(mose_root, "valid")
    assert ds.names == ("a_video", "b_video")
    video = ds[0]
    png = mose_root / "valid/Annotations/a_video/00000.png"
    assert video.first_masks == {1: (0, png), 2: (0, png), 3: (0, png)}
    assert len(video) == 4 and list(video.annotation_paths) == [0]
    assert video.load_first_mask(3).sum() == 64
    assert build_dataset("mose", mose_root / "valid").names == ("a_video", "b_video")


def test_meta_object_starting_late_is_found(mose_root: Path) -> None:
    video = MOSEDataset(mose_root, "train")[0]
    assert video.first_masks[1][0] == 0
    assert video.first_masks[4] == (2, mose_root / "train/Annotations/t1/00002.png")


def test_first_frame_annotation_missing(mose_root: Path) -> None:
    (mose_root / "valid/Annotations/b_video/00000.png").unlink()
    ds = MOSEDataset(mose_root)
    assert ds[0].name == "a_video"
    with pytest.raises(MissingDataError, match=r"first-frame annotation .*b_video/00000\.png"):
        ds[1]


def test_meta_object_never_annotated(mose_root: Path, write) -> None:
    write.json(mose_root / "train/meta_train.json", {"videos": {"t1": {"objects": {"1": {}, "9": {}}}}})
    with pytest.raises(InconsistentDataError, match=r"objects \[9\] .*meta_train\.json"):
        MOSEDataset(mose_root, "train")[0]


def test_missing_folders(mose_root: Path, write) -> None:
    with pytest.raises(MissingDataError, match="MOSE test folder"):
        MOSEDataset(mose_root, "test")
    write.label(mose_root / "valid/Annotations/a_video/00042.png", write.label_with({1: (0, 0, 1, 1)}))
    with pytest.raises(InconsistentDataError, match=r"a_video/00042\.png has no matching frame"):
        MOSEDataset(mose_root)[0]
