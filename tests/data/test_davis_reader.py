from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uniref.data.datasets import DAVIS2017Dataset, InconsistentDataError, MissingDataError, build_dataset


def test_reads_sequences_and_first_masks(tmp_path: Path, write) -> None:
    davis = write.davis(tmp_path)
    ds = DAVIS2017Dataset(davis, "val")
    assert len(ds) == 2 and ds.names == ("seqA", "seqB")
    video = ds[0]
    assert video.name == "seqA" and len(video) == 4
    assert video.frame_names == ("00000", "00001", "00002", "00003")
    assert video.first_masks == {1: (0, davis / "Annotations/480p/seqA/00000.png"),
                                 2: (0, davis / "Annotations/480p/seqA/00000.png")}
    assert video.objects_starting_at(0) == (1, 2) and video.objects_starting_at(1) == ()
    mask = video.load_first_mask(2)
    assert mask.dtype == bool and mask.sum() == 8 * 10 and mask[24, 35]
    assert sorted(video.annotation_paths) == [0, 1, 2, 3]
    assert np.array_equal(np.unique(video.load_annotation(3)), [0, 1, 2])
    assert video.load_frame(2).shape == (32, 48, 3)
    assert video.output_frames is None
    assert ds.prediction_path(tmp_path / "out", video, 3) == tmp_path / "out/seqA/00003.png"
    with pytest.raises(KeyError, match="no object 7"):
        video.load_first_mask(7)


def test_root_above_davis_and_other_splits(tmp_path: Path, write) -> None:
    write.davis(tmp_path)
    assert build_dataset("davis17", tmp_path, split="train").names == ("seqB",)
    assert DAVIS2017Dataset(tmp_path, "test").split == "test-dev"
    assert DAVIS2017Dataset(tmp_path).by_name("seqB").first_masks.keys() == {1}


def test_missing_split_file(tmp_path: Path, write) -> None:
    write.davis(tmp_path)
    with pytest.raises(MissingDataError, match=r"ImageSets/2017/test-challenge\.txt"):
        DAVIS2017Dataset(tmp_path, "test-challenge")


def test_missing_first_frame_annotation(tmp_path: Path, write) -> None:
    davis = write.davis(tmp_path)
    (davis / "Annotations/480p/seqA/00000.png").unlink()
    ds = DAVIS2017Dataset(davis)
    with pytest.raises(MissingDataError, match=r"seqA/00000\.png"):
        ds[0]
    assert ds[1].name == "seqB"  # other sequences stay readable


def test_annotation_without_frame(tmp_path: Path, write) -> None:
    davis = write.davis(tmp_path)
    write.label(davis / "Annotations/480p/seqB/00007.png", write.label_with({1: (0, 0, 2, 2)}))
    with pytest.raises(InconsistentDataError, match=r"seqB/00007\.png has no matching frame"):
        DAVIS2017Dataset(davis).by_name("seqB")


def test_missing_sequence_folder_and_root(tmp_path: Path, write) -> None:
    davis = write.davis(tmp_path)
    (davis / "ImageSets/2017/val.txt").write_text("seqA\nghost\n")
    with pytest.raises(MissingDataError, match="ghost"):
        DAVIS2017Dataset(davis)
    with pytest.raises(MissingDataError, match="DAVIS root"):
        DAVIS2017Dataset(tmp_path / "absent")
