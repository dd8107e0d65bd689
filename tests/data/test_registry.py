from __future__ import annotations

from pathlib import Path

import pytest

from uniref.data.datasets import (
    DATASETS,
    DAVIS2017Dataset,
    DatasetError,
    FSS1000Dataset,
    LVOSDataset,
    MissingDataError,
    MOSEDataset,
    RefCOCODataset,
    RefDAVIS17Dataset,
    RefYouTubeVOSDataset,
    YouTubeVOSDataset,
    build_dataset,
    get_dataset_spec,
)


def test_every_benchmark_is_registered() -> None:
    expected = {
        "refcoco": RefCOCODataset, "refcoco+": RefCOCODataset, "refcocog": RefCOCODataset,
        "fss1000": FSS1000Dataset, "davis17": DAVIS2017Dataset, "ytvos18": YouTubeVOSDataset,
        "ytvos19": YouTubeVOSDataset, "refytvos": RefYouTubeVOSDataset, "refdavis": RefDAVIS17Dataset,
        "lvos": LVOSDataset, "mose": MOSEDataset,
    }
    assert {name: spec.cls for name, spec in DATASETS.items()} == expected
    assert get_dataset_spec("RefCOCO+").defaults == {"dataset": "refcoco+", "split_by": "unc"}
    assert get_dataset_spec("refcocog").defaults["split_by"] == "umd"
    assert {spec.task for spec in DATASETS.values()} == {"ris", "fss", "vos", "rvos"}


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="known datasets: refcoco, refcoco\\+, refcocog, fss1000, davis17"):
        build_dataset("davis16", "/nowhere")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_root_names_the_path(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "not_downloaded"
    with pytest.raises(MissingDataError, match="not_downloaded") as info:
        build_dataset(name, missing)
    assert isinstance(info.value, DatasetError) and isinstance(info.value, FileNotFoundError)


def test_indexing_rules(tmp_path: Path, write) -> None:
    ds = DAVIS2017Dataset(write.davis(tmp_path))
    assert ds[-1].name == "seqB" and [v.name for v in ds] == ["seqA", "seqB"]
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(TypeError):
        ds["seqA"]  # type: ignore[index]
    with pytest.raises(KeyError, match="no video named"):
        ds.by_name("seqZ")
