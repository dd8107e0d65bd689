"""YouTube-VOS 2018 / 2019, read from the released folders.

Layout under `root`::

    <split>/JPEGImages/<vid>/00000.jpg ...    valid/test: every 5th frame only
    <split>/Annotations/<vid>/00000.png ...   valid/test: only frames where an object starts
    <split>/meta.json                         {"videos": {vid: {"objects": {id: {"category",
                                                                               "frames": [...]}}}}}
    <split>_all_frames/JPEGImages/<vid>/...   optional, every frame (also accepted under
                                              all_frames/<split>_all_frames/)

Objects may start late: each object's mask is given on the first frame meta.json lists for it.
The server expects predictions for the frames meta.json lists (`output_frames`), written as
`Annotations/<vid>/<frame>.png` and zipped.
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
    scan_video_folder,
)

_SPLIT_ALIASES = {"val": "valid"}


class YouTubeVOSDataset(VideoDatasetReader):
    """YouTube-VOS videos with the first mask of every object.

    Args:
        root: the folder holding `<split>/` (or the `<split>/` folder itself).
        split: "valid" (alias "val"), "train" or "test".
        year: 2018 or 2019 (same layout; kept for naming and thresholds).
        all_frames: read frames from `<split>_all_frames` (every frame) instead of the sparse
            every-5th-frame folder. Masks and `output_frames` still follow meta.json.
    """

    def __init__(self, root: Path | str, split: str = "valid", year: int = 2018, all_frames: bool = False) -> None:
        root = require_dir(Path(root), "YouTube-VOS root")
        self.split = _SPLIT_ALIASES.get(split, split)
        self.year = int(year)
        self.all_frames = all_frames
        if (root / "meta.json").is_file() and (root / "JPEGImages").is_dir() and not (root / self.split).is_dir():
            split_dir = root
        else:
            split_dir = require_dir(root / self.split, f"YouTube-VOS {self.split} folder")
        self.split_dir = split_dir
        self.meta_path = split_dir / "meta.json"
        meta = load_json(self.meta_path, "YouTube-VOS meta.json")
        if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
            raise InconsistentDataError(f"meta.json has no 'videos' mapping: {self.meta_path}")
        self._meta: dict[str, dict] = meta["videos"]
        if all_frames:
            base = split_dir.parent
            self.frames_dir = first_existing(
                [base / f"{self.split}_all_frames" / "JPEGImages",
                 base / "all_frames" / f"{self.split}_all_frames" / "JPEGImages"],
                f"YouTube-VOS {self.split}_all_frames frame folder", is_dir=True)
        else:
            self.frames_dir = require_dir(split_dir / "JPEGImages", "YouTube-VOS frame folder")
        self.annotations_dir = require_dir(split_dir / "Annotations", "YouTube-VOS annotation folder")
        self._keys = sorted(self._meta)

    def _load(self, key: str) -> VideoSample:
        frames, annotations = scan_video_folder(self.frames_dir / key, self.annotations_dir / key, key)
        index_of = {p.stem: i for i, p in enumerate(frames)}
        objects = self._meta[key].get("objects", {})
        first_masks: dict[int, tuple[int, Path]] = {}
        listed: set[int] = set()
        categories: dict[int, str | None] = {}
        for obj_key, obj in objects.items():
            obj_frames = sorted(obj.get("frames", []))
            if not obj_frames:
                raise InconsistentDataError(f"object {obj_key} of video {key!r} lists no frames in {self.meta_path}")
            for name in obj_frames:
                if name not in index_of:
                    raise MissingDataError(
                        f"frame {name} listed in {self.meta_path} for object {obj_key} of video {key!r} is "
                        f"missing: {self.frames_dir / key / (name + '.jpg')}")
                listed.add(index_of[name])
            start = index_of[obj_frames[0]]
            if start not in annotations:
                raise MissingDataError(
                    f"first annotation of object {obj_key} of video {key!r} missing: "
                    f"{self.annotations_dir / key / (obj_frames[0] + '.png')}")
            first_masks[int(obj_key)] = (start, annotations[start])
            categories[int(obj_key)] = obj.get("category")
        return VideoSample(name=key, frame_paths=tuple(frames), first_masks=first_masks,
                           annotation_paths=annotations, output_frames=tuple(sorted(listed)),
                           info={"split": self.split, "year": self.year, "categories": categories})

    def prediction_path(self, out_dir: Path | str, sample: VideoSample, frame_index: int,
                        exp_id: str | None = None) -> Path:
        """`<out_dir>/Annotations/<video>/<frame>.png`, the layout the server's zip expects."""
        return Path(out_dir) / "Annotations" / sample.name / f"{sample.frame_names[frame_index]}.png"
