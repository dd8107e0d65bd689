"""From a :class:`~uniref.training.stages.DatasetConfig` to sample builders, and from batch plans to batches.

The evaluation readers (``uniref.data.datasets``) are reused for the benchmark layouts; their samples are
wrapped lazily into training entries (a video folder is only scanned when one of its clips is drawn).
Every problem with a dataset is reported before training starts, naming the dataset and its path.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uniref.training.samples import (
    ImageEntry,
    SampleError,
    TrainBatch,
    VideoEntry,
    build_sample_builder,
    collate,
)
from uniref.training.sampler import BatchPlan
from uniref.training.stages import DatasetConfig, StageConfig

__all__ = ["DataSource", "BatchFactory", "build_sources", "dataset_entries", "KINDS"]

_IMAGE_TASKS = ("det", "ris", "fss", "vos", "rvos")
# kind -> tasks it can feed
KINDS: dict[str, tuple[str, ...]] = {
    "synthetic": _IMAGE_TASKS,
    "world": _IMAGE_TASKS,
    "coco": ("det", "vos"),
    "coco-json": _IMAGE_TASKS,
    "refcoco": ("ris", "rvos"),
    "refcoco-mixed": ("ris", "rvos"),
    "fss1000": ("fss",),
    "ytvos": ("vos",),
    "lvos": ("vos",),
    "mose": ("vos",),
    "davis": ("vos",),
    "refytvos": ("rvos",),
    "ovis": ("vos",),
    "ytvis-json": ("vos",),
    "davis-folders": ("vos", "rvos"),
}


class _Mapped(Sequence):
    """A lazy ``fn(source[i])`` view."""

    def __init__(self, source: Sequence, fn: Callable[[Any], Any]):
        self.source, self.fn = source, fn

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index):  # type: ignore[override]
        return self.fn(self.source[index])


class _Concat(Sequence):
    def __init__(self, parts: Sequence[Sequence]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index):  # type: ignore[override]
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.parts[part][index - int(self.offsets[part])]


def _image_sample_entry(sample) -> ImageEntry:
    """A reader's ImageSample (RefCOCO, FSS-1000) as a training entry."""
    return ImageEntry(
        sample.sample_id, sample.load_image, lambda: sample.load_mask()[None],
        expressions=(sample.expression,) if sample.expression else (),
        category=sample.info.get("class_name") if sample.info else None,
    )


def _video_sample_entry(sample) -> VideoEntry:
    """A reader's VideoSample as a training entry over its annotated frames."""
    frames = sorted(sample.annotation_paths)

    def objects(i: int) -> dict[int, np.ndarray]:
        labels = sample.load_annotation(frames[i])
        return {int(k): labels == k for k in np.unique(labels) if k not in (0, 255)}

    texts: dict[int, list[str]] = {}
    for exp in sample.expressions:
        if exp.obj_id is not None:
            texts.setdefault(int(exp.obj_id), []).append(exp.text)
    return VideoEntry(sample.name, len(frames), lambda i: sample.load_frame(frames[i]), objects,
                      {k: tuple(v) for k, v in texts.items()})


def _resolve_root(cfg: DatasetConfig, data_root: str) -> Path:
    if not cfg.root:
        raise ValueError(f"dataset {cfg.name} has no root; set datasets.{cfg.name}.root=PATH")
    root = Path(os.path.expanduser(cfg.root))
    if root.is_absolute() or root.exists():
        if not root.exists():
            raise FileNotFoundError(f"dataset {cfg.name}: path does not exist: {root}")
        return root
    # a relative root: as given (from the working directory), else under data_root (the official layout)
    under = Path(os.path.expanduser(data_root)) / root
    if not under.exists():
        raise FileNotFoundError(f"dataset {cfg.name}: path does not exist: {root} (nor {under})")
    return under


def dataset_entries(cfg: DatasetConfig, data_root: str = "datasets") -> Sequence:
    """The lazy entries of one dataset (image or video entries)."""
    from uniref.training import custom

    if cfg.kind not in KINDS:
        raise ValueError(f"dataset {cfg.name}: unknown kind {cfg.kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    if cfg.task not in KINDS[cfg.kind]:
        raise ValueError(f"dataset {cfg.name}: kind {cfg.kind} cannot feed task {cfg.task!r} "
                         f"(it feeds {', '.join(KINDS[cfg.kind])})")
    opts = dict(cfg.options)
    if cfg.kind == "synthetic":
        from uniref.training.synthetic import synthetic_entries

        return synthetic_entries(cfg.task, int(opts.get("num", 8)), size=int(opts.get("size", 64)),
                                 seed=int(opts.get("seed", 0)), num_frames=int(opts.get("num_frames", 6)),
                                 max_objects=int(opts.get("max_objects", 3)))
    if cfg.kind == "world":
        from uniref.data.synthetic.training import world_entries
        from uniref.data.synthetic.world import HELD_OUT_SEED

        seed = int(opts.get("seed", 0))
        if seed >= HELD_OUT_SEED:
            raise ValueError(f"dataset {cfg.name}: seed {seed} is reserved for held-out evaluation "
                             f"(train with seeds below {HELD_OUT_SEED})")
        return world_entries(cfg.task, int(opts.get("num", 1000)), seed=seed, split=str(opts.get("split", "train")))
    root = _resolve_root(cfg, data_root)
    try:
        if cfg.kind in ("coco", "coco-json"):
            # for vos/rvos the images become static clips (images without an instance are left out)
            return custom.coco_json_entries(root, cfg.task, **opts)
        if cfg.kind == "davis-folders":
            return custom.davis_folder_entries(root, cfg.task, **opts)
        if cfg.kind in ("ovis", "ytvis-json"):
            return custom.ytvis_json_entries(root, **opts)
        from uniref.data import datasets as D

        if cfg.kind == "refcoco":
            reader = D.RefCOCODataset(root, **{"split": "train", **opts})
            return _Mapped(reader, _image_sample_entry)
        if cfg.kind == "refcoco-mixed":
            parts = [D.RefCOCODataset(root, dataset=name, split_by=by, split="train", **opts)
                     for name, by in (("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd"))]
            return _Mapped(_Concat(parts), _image_sample_entry)
        if cfg.kind == "fss1000":
            reader = D.FSS1000Dataset(root, **{"split": "train", **opts})
            return _Mapped(reader, _image_sample_entry)
        readers = {"ytvos": D.YouTubeVOSDataset, "lvos": D.LVOSDataset, "mose": D.MOSEDataset,
                   "davis": D.DAVIS2017Dataset, "refytvos": D.RefYouTubeVOSDataset}
        reader = readers[cfg.kind](root, **{"split": "train", **opts})
        return _Mapped(reader, _video_sample_entry)
    except TypeError as exc:  # an option the reader does not take
        raise ValueError(f"dataset {cfg.name}: bad options {opts} for kind {cfg.kind}: {exc}") from None


@dataclass
class DataSource:
    """A dataset ready to sample: its config, builder and size."""

    config: DatasetConfig
    builder: Any

    @property
    def name(self) -> str:
        return self.config.name

    def __len__(self) -> int:
        return len(self.builder)


def build_sources(stage: StageConfig) -> list[DataSource]:
    """Open every dataset of the stage; raises before training on a missing path or an empty dataset."""
    sources = []
    for cfg in stage.datasets:
        entries = dataset_entries(cfg, stage.data_root)
        if len(entries) == 0:
            where = f" at {_resolve_root(cfg, stage.data_root)}" if cfg.root else ""
            raise ValueError(f"dataset {cfg.name}{where} has no {cfg.task} samples")
        builder = build_sample_builder(cfg.task, entries, cfg.augment, sampling_range=cfg.sampling_range)
        sources.append(DataSource(cfg, builder))
    return sources


class BatchFactory:
    """Map-style dataset over :class:`BatchPlan` keys: draws, augments and collates one batch.

    A sample that cannot be built (e.g. a video without an object in two frames) is replaced by another
    sample of the same dataset, drawn from the batch's generator; a dataset that keeps failing is an error.
    """

    def __init__(self, sources: Sequence[DataSource], tokenizer=None, context_length: int = 77,
                 max_replacements: int = 20):
        self.sources = list(sources)
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.max_replacements = max_replacements

    def __getitem__(self, plan: BatchPlan) -> TrainBatch:
        source = self.sources[plan.dataset]
        rng = np.random.default_rng(plan.seed)
        # batch-level choice first, so that it does not depend on how many draws the samples take
        use_mask = None
        if source.config.task == "rvos":
            use_mask = bool(rng.random() < source.config.mask_ref_prob)
        samples = []
        for index in plan.indices:
            sample_rng = np.random.default_rng([plan.seed, index])
            errors = []
            while True:
                try:
                    samples.append(source.builder(index, sample_rng))
                    break
                except SampleError as exc:
                    errors.append(str(exc))
                    if len(errors) > self.max_replacements:
                        raise SampleError(f"dataset {source.name}: {len(errors)} samples in a row could not be "
                                          f"built; last: {errors[-1]}") from None
                    if len(errors) == 1:
                        warnings.warn(f"dataset {source.name}: skipping a sample ({exc})", stacklevel=2)
                    index = int(sample_rng.integers(len(source)))
        return collate(samples, dataset=source.name, task=source.config.task, tokenizer=self.tokenizer,
                       use_mask_reference=use_mask, context_length=self.context_length, iteration=plan.iteration)

    def __len__(self) -> int:  # DataLoader never asks with a sampler; defined for completeness
        return sum(len(s) for s in self.sources)
