"""Lazy readers for every benchmark of the paper, reading the datasets as they are downloaded.

`build_dataset("davis17", root, split="val")` returns a sequence of samples; `DATASETS` maps
each benchmark name to its reader class and the keyword defaults that name implies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .base import (
    CocoMask,
    DatasetError,
    DatasetReader,
    Expression,
    ImageSample,
    InconsistentDataError,
    MaskSource,
    MissingDataError,
    PngMask,
    Support,
    VideoDatasetReader,
    VideoSample,
)
from .davis import DAVIS2017Dataset
from .fss1000 import FSS1000Dataset
from .lvos import LVOSDataset
from .mose import MOSEDataset
from .refdavis import RefDAVIS17Dataset, parse_davis_text_annotations
from .refer import RefCOCODataset, load_refs_pickle
from .refytvos import RefYouTubeVOSDataset
from .ytvos import YouTubeVOSDataset


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark name's reader class, the keyword defaults the name implies, and its task."""

    cls: type[DatasetReader[Any]]
    task: str
    defaults: Mapping[str, Any] = field(default_factory=dict)


DATASETS: Mapping[str, DatasetSpec] = {
    "refcoco": DatasetSpec(RefCOCODataset, "ris", {"dataset": "refcoco", "split_by": "unc"}),
    "refcoco+": DatasetSpec(RefCOCODataset, "ris", {"dataset": "refcoco+", "split_by": "unc"}),
    "refcocog": DatasetSpec(RefCOCODataset, "ris", {"dataset": "refcocog", "split_by": "umd"}),
    "fss1000": DatasetSpec(FSS1000Dataset, "fss"),
    "davis17": DatasetSpec(DAVIS2017Dataset, "vos"),
    "ytvos18": DatasetSpec(YouTubeVOSDataset, "vos", {"year": 2018}),
    "ytvos19": DatasetSpec(YouTubeVOSDataset, "vos", {"year": 2019}),
    "refytvos": DatasetSpec(RefYouTubeVOSDataset, "rvos"),
    "refdavis": DatasetSpec(RefDAVIS17Dataset, "rvos"),
    "lvos": DatasetSpec(LVOSDataset, "vos"),
    "mose": DatasetSpec(MOSEDataset, "vos"),
}


def get_dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of a benchmark name (case-insensitive)."""
    spec = DATASETS.get(name.lower())
    if spec is None:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return spec


def build_dataset(name: str, root: Path | str, **kwargs: Any) -> DatasetReader[Any]:
    """Open benchmark `name` at `root`; `kwargs` (split, shots, ...) override the name's defaults."""
    spec = get_dataset_spec(name)
    return spec.cls(root, **{**spec.defaults, **kwargs})


__all__ = [
    "DATASETS",
    "CocoMask",
    "DAVIS2017Dataset",
    "DatasetError",
    "DatasetReader",
    "DatasetSpec",
    "Expression",
    "FSS1000Dataset",
    "ImageSample",
    "InconsistentDataError",
    "LVOSDataset",
    "MOSEDataset",
    "MaskSource",
    "MissingDataError",
    "PngMask",
    "RefCOCODataset",
    "RefDAVIS17Dataset",
    "RefYouTubeVOSDataset",
    "Support",
    "VideoDatasetReader",
    "VideoSample",
    "YouTubeVOSDataset",
    "build_dataset",
    "get_dataset_spec",
    "load_refs_pickle",
    "parse_davis_text_annotations",
]
