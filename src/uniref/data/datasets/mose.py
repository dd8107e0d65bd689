"""MOSE (v1) VOS, read from the released folders.

Layout under `root`::

    <split>/JPEGImages/<vid>/00000.jpg ...
    <split>/Annotations/<vid>/00000.png ...    valid: the first frame only; train: every frame
    <split>/meta_<split>.json                  optional {"videos": {vid: {"objects": ...}}}

Semi-supervised protocol: the objects are given by the first frame's annotation. When the
meta file lists an object absent from the first frame, its first appearance in the later
annotations is used.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    InconsistentDataError,
    MissingDataError,
    VideoDatasetReader,
    VideoSample,
    first_appearances,
    first_existing,
    load_json,
    require_dir,
    scan_video_folder,
)

_ALIASES = {"valid": ("valid", "val"), "val": ("val", "valid"), "train": ("train",), "test": ("test",)}


class MOSEDataset(VideoDatasetReader):
    """MOSE videos with the first-frame masks of their objects.

    Args:
        root: the MOSE folder holding `<split>/` (or the split folder itself).
        split: "valid" (alias "val"), "train" or "test".
    """

    def __init__(self, root: Path | str, split: str = "valid") -> None:
        root = require_dir(Path(root), "MOSE root")
        names = _ALIASES.get(split, (split,))
        self.split = split
        if (root / "JPEGImages").is_dir() and not any((root / n).is_dir() for n in names):
            self.split_dir = root
        else:
            self.split_dir = first_existing([root / n for n in names], f"MOSE {split} folder", is_dir=True)
        self.frames_dir = require_dir(self.split_dir / "JPEGImages", "MOSE frame folder")
        self.annotations_dir = require_dir(self.split_dir / "Annotations", "MOSE annotation folder")
        self.meta_path: Path | None = None
        self._objects: dict[str, list[int]] = {}
        for folder in (self.split_dir, self.split_dir.parent):
            for n in names:
                if (folder / f"meta_{n}.json").is_file() and self.meta_path is None:
                    self.meta_path = folder / f"meta_{n}.json"
        if self.meta_path is not None:
            meta = load_json(self.meta_path, "MOSE meta file")
            if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
                raise InconsistentDataError(f"MOSE meta file has no 'videos' mapping: {self.meta_path}")
            self._objects = {v: [int(o) for o in info.get("objects", {})] for v, info in meta["videos"].items()}
            self._keys = sorted(self._objects)
        else:
            self._keys = sorted(p.name for p in self.frames_dir.iterdir() if p.is_dir())
        if not self._keys:
            raise MissingDataError(f"no MOSE videos found in {self.frames_dir}")

    def _load(self, key: str) -> VideoSample:
        frames, annotations = scan_video_folder(self.frames_dir / key, self.annotations_dir / key, key)
        if 0 not in annotations:
            raise MissingDataError(
                f"first-frame annotation of MOSE video {key!r} missing: "
                f"{self.annotations_dir / key / (frames[0].stem + '.png')}")
        first = first_appearances(annotations, stop_after_first=True)
        wanted = self._objects.get(key, [])
        if any(obj not in first for obj in wanted):
            first = first_appearances(annotations, wanted=wanted)
            missing = [obj for obj in wanted if obj not in first]
            if missing:
                raise InconsistentDataError(
                    f"objects {missing} of MOSE video {key!r} (listed in {self.meta_path}) appear in no "
                    f"annotation under {self.annotations_dir / key}")
        if not first:
            raise InconsistentDataError(f"first-frame annotation has no object: {annotations[0]}")
        return VideoSample(name=key, frame_paths=tuple(frames), first_masks=first,
                           annotation_paths=annotations, info={"split": self.split})
