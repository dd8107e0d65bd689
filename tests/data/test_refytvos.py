from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from uniref.data.datasets import (
    Expression,
    InconsistentDataError,
    MissingDataError,
    RefYouTubeVOSDataset,
    build_dataset,
)

FRAMES = ["00000", "00005", "00010"]


@pytest.fixture
def refyt_root(tmp_path: Path, write) -> Path:
    root = tmp_path / "ref-youtube-vos"
    valid_videos = {
        "v1": {"expressions": {"0": {"exp": "a cat"}, "10": {"exp": "the dog"}, "2": {"exp": "a bird"}},
               "frames": FRAMES},
        "v2": {"expressions": {"0": {"exp": "a car"}}, "frames": FRAMES[:2]},
        "t1": {"expressions": {"0": {"exp": "a test video"}}, "frames": FRAMES[:1]},
    }
    write.json(root / "meta_expressions/valid/meta_expressions.json", {"videos": valid_videos})
    write.json(root / "meta_expressions/test/meta_expressions.json", {"videos": {"t1": valid_videos["t1"]}})
    for video, entry in valid_videos.items():
        for t, name in enumerate(entry["frames"]):
            write.jpg(root / "valid/JPEGImages" / video / f"{name}.jpg", seed=t)
    train = {"v9": {"expressions": {"0": {"exp": "left zebra", "obj_id": "1"},
                                    "1": {"exp": "right zebra", "obj_id": "2"}}, "frames": FRAMES}}
    write.json(root / "meta_expressions/train/meta_expressions.json", {"videos": train})
    for t, name in enumerate(FRAMES):
        write.jpg(root / "train/JPEGImages/v9" / f"{name}.jpg", seed=t)
        write.label(root / "train/Annotations/v9" / f"{name}.png", write.label_with({1: (0, 0, 4, 4), 2: (5, 5, 9, 9)}))
    return root


def test_valid_excludes_test_videos(refyt_root: Path) -> None:
    ds = RefYouTubeVOSDataset(refyt_root, "valid")
    assert ds.names == ("v1", "v2")
    v1 = ds[0]
    assert v1.expressions == (Expression("0", "a cat"), Expression("2", "a bird"), Expression("10", "the dog"))
    assert v1.frame_names == tuple(FRAMES) and v1.first_masks == {} and v1.annotation_paths == {}
    assert v1.load_frame(1).shape == (32, 48, 3)
    out = ds.prediction_path(refyt_root / "out", v1, 2, exp_id="10")
    assert out == refyt_root / "out/Annotations/v1/10/00010.png"
    with pytest.raises(ValueError, match="exp_id"):
        ds.prediction_path("out", v1, 0)
    assert build_dataset("refytvos", refyt_root, exclude_test_videos=False).names == ("t1", "v1", "v2")


def test_test_split_reads_frames_from_valid(refyt_root: Path) -> None:
    ds = RefYouTubeVOSDataset(refyt_root, "test")
    assert ds.names == ("t1",) and len(ds[0]) == 1


def test_warns_without_test_expressions(refyt_root: Path) -> None:
    (refyt_root / "meta_expressions/test/meta_expressions.json").unlink()
    with pytest.warns(UserWarning, match="202 videos"):
        ds = RefYouTubeVOSDataset(refyt_root, "val")
    assert len(ds) == 3


def test_train_with_annotations_and_object_ids(refyt_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = RefYouTubeVOSDataset(refyt_root, "train")
    v9 = ds[0]
    assert [(e.text, e.obj_id) for e in v9.expressions] == [("left zebra", 1), ("right zebra", 2)]
    assert sorted(v9.annotation_paths) == [0, 1, 2]
    assert (v9.load_annotation(2) == 2).sum() == 16


def test_frame_listed_missing(refyt_root: Path) -> None:
    (refyt_root / "valid/JPEGImages/v1/00005.jpg").unlink()
    with pytest.raises(MissingDataError, match=r"frame 00005 .*v1/00005\.jpg"):
        RefYouTubeVOSDataset(refyt_root)[0]


def test_annotation_without_frame(refyt_root: Path, write) -> None:
    write.label(refyt_root / "train/Annotations/v9/00099.png", write.label_with({1: (0, 0, 1, 1)}))
    with pytest.raises(InconsistentDataError, match=r"v9/00099\.png has no matching frame"):
        RefYouTubeVOSDataset(refyt_root, "train")[0]


def test_missing_meta_expressions(refyt_root: Path) -> None:
    (refyt_root / "meta_expressions/valid/meta_expressions.json").unlink()
    with pytest.raises(MissingDataError, match=r"meta_expressions/valid/meta_expressions\.json"):
        RefYouTubeVOSDataset(refyt_root)
