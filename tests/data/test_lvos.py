from __future__ import annotations

from pathlib import Path

import pytest

from uniref.data.datasets import InconsistentDataError, LVOSDataset, MissingDataError, build_dataset

NUMBERS = (1, 6, 11, 16, 21)  # every 5th frame of the 30 fps video, named from 00000001


def _meta(start2: str = "00000011") -> dict:
    return {"videos": {
        "vidA": {"objects": {
            "1": {"frame_range": {"start": "00000001", "end": "00000026", "frame_nums": "5"}},
            "2": {"frame_range": {"start": start2, "end": "00000026", "frame_nums": "3"}},
        }},
        "vidB": {"objects": {"1": {"frame_range": {"start": "00000006", "end": "00000016", "frame_nums": "2"}}}},
    }}


@pytest.fixture
def lvos_root(tmp_path: Path, write) -> Path:
    root = tmp_path / "LVOS"
    valid = root / "valid"
    for video in ("vidA", "vidB"):
        for t, n in enumerate(NUMBERS):
            write.jpg(valid / "JPEGImages" / video / f"{n:08d}.jpg", seed=t)
            objects = {1: (0, 0, 8, 8)}
            if video == "vidA" and n >= 11:
                objects[2] = (10, 10, 20, 20)
            if video == "vidB" and n < 6:
                objects = {}
            write.label(valid / "Annotations" / video / f"{n:08d}.png", write.label_with(objects))
    write.json(valid / "valid_meta.json", _meta())
    return root


def test_objects_start_at_their_frame_range(lvos_root: Path) -> None:
    ds = LVOSDataset(lvos_root, "valid")
    assert ds.names == ("vidA", "vidB")
    vid_a = ds[0]
    assert vid_a.frame_names == tuple(f"{n:08d}" for n in NUMBERS)
    ann = lvos_root / "valid/Annotations/vidA"
    assert vid_a.first_masks == {1: (0, ann / "00000001.png"), 2: (2, ann / "00000011.png")}
    assert vid_a.load_first_mask(2).sum() == 100
    assert vid_a.info["frame_ranges"][2]["frame_nums"] == "3"
    assert ds.by_name("vidB").first_masks[1][0] == 1
    assert ds.prediction_path("res", vid_a, 4) == Path("res/vidA/00000021.png")


def test_meta_locations_and_val_folder(lvos_root: Path, write) -> None:
    (lvos_root / "valid/valid_meta.json").rename(lvos_root / "moved.json")
    with pytest.raises(MissingDataError, match=r"(?s)valid_meta\.json.*meta_jsons"):
        LVOSDataset(lvos_root)
    write.json(lvos_root / "meta_jsons/valid_meta.json", _meta())
    assert len(LVOSDataset(lvos_root)) == 2
    (lvos_root / "valid").rename(lvos_root / "val")
    assert build_dataset("lvos", lvos_root, split="val", meta_file=lvos_root / "moved.json").names == ("vidA", "vidB")


def test_start_frame_missing(lvos_root: Path) -> None:
    (lvos_root / "valid/JPEGImages/vidA/00000011.jpg").unlink()
    (lvos_root / "valid/Annotations/vidA/00000011.png").unlink()
    with pytest.raises(MissingDataError, match=r"start frame 00000011 of object 2 .*vidA/00000011\.jpg"):
        LVOSDataset(lvos_root)[0]


def test_start_annotation_missing(lvos_root: Path) -> None:
    (lvos_root / "valid/Annotations/vidA/00000011.png").unlink()
    with pytest.raises(MissingDataError, match=r"object 2 .*vidA/00000011\.png"):
        LVOSDataset(lvos_root)[0]


def test_annotation_without_frame_and_bad_meta(lvos_root: Path, write) -> None:
    write.label(lvos_root / "valid/Annotations/vidB/00000099.png", write.label_with({1: (0, 0, 1, 1)}))
    with pytest.raises(InconsistentDataError, match=r"vidB/00000099\.png has no matching frame"):
        LVOSDataset(lvos_root).by_name("vidB")
    write.json(lvos_root / "valid/valid_meta.json", {"videos": {"vidA": {"objects": {"1": {}}}}})
    with pytest.raises(InconsistentDataError, match="frame_range"):
        LVOSDataset(lvos_root)[0]
