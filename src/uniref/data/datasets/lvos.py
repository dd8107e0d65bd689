"""LVOS v1 long-term VOS, read from the released folders.

Layout under `root`::

    <split>/JPEGImages/<vid>/00000001.jpg ...   every 5th frame of the 30 fps video
    <split>/Annotations/<vid>/00000001.png ...  palette PNGs (all frames are annotated in valid)
    <split>/<split>_meta.json                   {"videos": {vid: {"objects": {id: {"frame_range":
                                                    {"start": "00001201", "end": ..., "frame_nums": ...}}}}}}

The meta file is also accepted as `meta_jsons/<split>_meta.json` (UniRef's layout) or
`<split>/meta.json` (the evaluation toolkit's), or passed as `meta_file`. `valid` and `val`
are both accepted as folder names.

Objects start late: each object's mask is given on its `frame_range.start` frame, matched to a
frame file by number.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    InconsistentDataError,
    MissingDataError,
    VideoDatasetReader,
    VideoSample,
    first_existing,
    load_json,
    require_dir,
    require_file,
    scan_video_folder,
)

_ALIASES = {"valid": ("valid", "val"), "val": ("val", "valid"), "train": ("train",), "test": ("test",)}


class LVOSDataset(VideoDatasetReader):
    """LVOS videos with the first mask of every object.

    Args:
        root: the LVOS folder holding `<split>/` (or the split folder itself).
        split: "valid" (alias "val"), "train" or "test".
        meta_file: the meta json when it is not in one of the usual places.
    """

    def __init__(self, root: Path | str, split: str = "valid", meta_file: Path | str | None = None) -> None:
        root = require_dir(Path(root), "LVOS root")
        names = _ALIASES.get(split, (split,))
        self.split = split
        if (root / "JPEGImages").is_dir() and not any((root / n).is_dir() for n in names):
            self.split_dir = root
        else:
            self.split_dir = first_existing([root / n for n in names], f"LVOS {split} folder", is_dir=True)
        if meta_file is not None:
            self.meta_path = require_file(Path(meta_file), "LVOS meta file")
        else:
            base = self.split_dir.parent
            self.meta_path = first_existing(
                [self.split_dir / f"{n}_meta.json" for n in names]
                + [base / "meta_jsons" / f"{n}_meta.json" for n in names]
                + [self.split_dir / "meta.json"],
                f"LVOS {split} meta file")
        meta = load_json(self.meta_path, "LVOS meta file")
        if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
            raise InconsistentDataError(f"LVOS meta file has no 'videos' mapping: {self.meta_path}")
        self._meta: dict[str, dict] = meta["videos"]
        self.frames_dir = require_dir(self.split_dir / "JPEGImages", "LVOS frame folder")
        self.annotations_dir = require_dir(self.split_dir / "Annotations", "LVOS annotation folder")
        self._keys = sorted(self._meta)

    def _load(self, key: str) -> VideoSample:
        frames, annotations = scan_video_folder(self.frames_dir / key, self.annotations_dir / key, key)
        index_of_number = {int(p.stem): i for i, p in enumerate(frames) if p.stem.isdigit()}
        first_masks: dict[int, tuple[int, Path]] = {}
        frame_ranges: dict[int, dict] = {}
        for obj_key, obj in self._meta[key].get("objects", {}).items():
            frame_range = obj.get("frame_range")
            if not isinstance(frame_range, dict) or "start" not in frame_range:
                raise InconsistentDataError(
                    f"object {obj_key} of video {key!r} has no frame_range.start in {self.meta_path}")
            start = int(frame_range["start"])
            if start not in index_of_number:
                raise MissingDataError(
                    f"start frame {start:08d} of object {obj_key} of video {key!r} (from {self.meta_path}) is "
                    f"missing: {self.frames_dir / key / f'{start:08d}.jpg'}")
            index = index_of_number[start]
            if index not in annotations:
                raise MissingDataError(
                    f"first annotation of object {obj_key} of video {key!r} missing: "
                    f"{self.annotations_dir / key / (frames[index].stem + '.png')}")
            first_masks[int(obj_key)] = (index, annotations[index])
            frame_ranges[int(obj_key)] = dict(frame_range)
        if not first_masks:
            raise InconsistentDataError(f"video {key!r} has no objects in {self.meta_path}")
        return VideoSample(name=key, frame_paths=tuple(frames), first_masks=first_masks,
                           annotation_paths=annotations, info={"split": self.split, "frame_ranges": frame_ranges})
