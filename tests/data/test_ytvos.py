from __future__ import annotations

from pathlib import Path

import pytest

from uniref.data.datasets import InconsistentDataError, MissingDataError, YouTubeVOSDataset, build_dataset

SPARSE = ["00000", "00005", "00010", "00015"]


@pytest.fixture
def ytvos_root(tmp_path: Path, write) -> Path:
    """valid/ with vid1 (object 2 starts at 00010) and vid2; valid_all_frames/ with every frame of vid1."""
    root = tmp_path / "ytvos2018"
    valid = root / "valid"
    for t, name in enumerate(SPARSE):
        write.jpg(valid / "JPEGImages/vid1" / f"{name}.jpg", seed=t)
    write.label(valid / "Annotations/vid1/00000.png", write.label_with({1: (0, 0, 10, 10)}))
    write.label(valid / "Annotations/vid1/00010.png", write.label_with({2: (12, 20, 20, 30)}))
    for name in ("00000", "00005", "00010"):
        write.jpg(valid / "JPEGImages/vid2" / f"{name}.jpg")
    write.label(valid / "Annotations/vid2/00000.png", write.label_with({1: (1, 1, 5, 5), 3: (6, 6, 9, 9)}))
    meta = {"videos": {
        "vid1": {"objects": {"1": {"category": "cat", "frames": SPARSE},
                             "2": {"category": "dog", "frames": ["00010", "00015"]}}},
        "vid2": {"objects": {"1": {"category": "ant", "frames": ["00000", "00005"]},
                             "3": {"category": "bee", "frames": ["00000"]}}},
    }}
    write.json(valid / "meta.json", meta)
    for t in range(16):
        write.jpg(root / "valid_all_frames/JPEGImages/vid1" / f"{t:05d}.jpg", seed=t)
    return root


def test_sparse_valid_objects_start_late(ytvos_root: Path) -> None:
    ds = YouTubeVOSDataset(ytvos_root, "valid")
    assert ds.names == ("vid1", "vid2")
    vid1 = ds[0]
    assert vid1.frame_names == tuple(SPARSE)
    ann = ytvos_root / "valid/Annotations/vid1"
    assert vid1.first_masks == {1: (0, ann / "00000.png"), 2: (2, ann / "00010.png")}
    assert vid1.objects_starting_at(2) == (2,)
    assert vid1.load_first_mask(2).sum() == 8 * 10
    assert vid1.output_frames == (0, 1, 2, 3)
    assert vid1.info["categories"] == {1: "cat", 2: "dog"}
    vid2 = ds.by_name("vid2")
    assert vid2.first_masks.keys() == {1, 3} and vid2.output_frames == (0, 1)
    assert ds.prediction_path("out", vid1, 2) == Path("out/Annotations/vid1/00010.png")


def test_all_frames_variant(ytvos_root: Path) -> None:
    ds = YouTubeVOSDataset(ytvos_root, "val", all_frames=True)
    vid1 = ds[0]
    assert len(vid1) == 16
    assert vid1.first_masks[2][0] == 10 and vid1.first_masks[1][0] == 0
    assert vid1.output_frames == (0, 5, 10, 15)  # the server still wants the meta.json frames only


def test_registry_years_and_split_folder_root(ytvos_root: Path) -> None:
    assert build_dataset("ytvos19", ytvos_root).year == 2019
    assert build_dataset("ytvos18", ytvos_root).year == 2018
    assert YouTubeVOSDataset(ytvos_root / "valid").names == ("vid1", "vid2")


def test_frame_listed_in_meta_missing(ytvos_root: Path) -> None:
    (ytvos_root / "valid/JPEGImages/vid1/00015.jpg").unlink()
    with pytest.raises(MissingDataError, match=r"frame 00015 listed in .*meta\.json.*vid1/00015\.jpg"):
        YouTubeVOSDataset(ytvos_root)[0]


def test_first_annotation_of_late_object_missing(ytvos_root: Path) -> None:
    (ytvos_root / "valid/Annotations/vid1/00010.png").unlink()
    with pytest.raises(MissingDataError, match=r"object 2 .*vid1/00010\.png"):
        YouTubeVOSDataset(ytvos_root)[0]


def test_annotation_without_frame(ytvos_root: Path, write) -> None:
    write.label(ytvos_root / "valid/Annotations/vid2/00020.png", write.label_with({1: (0, 0, 1, 1)}))
    with pytest.raises(InconsistentDataError, match=r"vid2/00020\.png has no matching frame"):
        YouTubeVOSDataset(ytvos_root).by_name("vid2")


def test_missing_meta_and_all_frames(ytvos_root: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="train"):
        YouTubeVOSDataset(ytvos_root, "train")
    (ytvos_root / "valid_all_frames").rename(tmp_path / "moved")
    with pytest.raises(MissingDataError, match="valid_all_frames"):
        YouTubeVOSDataset(ytvos_root, all_frames=True)
    (ytvos_root / "valid/meta.json").unlink()
    with pytest.raises(MissingDataError, match=r"valid/meta\.json"):
        YouTubeVOSDataset(ytvos_root)
