"""Ref-YouTube-VOS referring video object segmentation, read from the released folders.

Layout under `root`::

    meta_expressions/<split>/meta_expressions.json
        {"videos": {vid: {"expressions": {exp_id: {"exp": str, "obj_id": str}}, "frames": [...]}}}
        (obj_id is absent from the valid/test expressions)
    <split>/JPEGImages/<vid>/<frame>.jpg
    <split>/Annotations/<vid>/<frame>.png      train only
    <split>/meta.json                          train only (not needed here)

The competition's `valid` expressions file also holds the 305 test videos; the 202-video
validation set is `valid` minus the videos of `meta_expressions/test/meta_expressions.json`,
which this reader removes when that file is present (`exclude_test_videos`).

Predictions for the server: binary PNGs at `Annotations/<video>/<exp_id>/<frame>.png`, zipped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .base import (
    FRAME_SUFFIXES,
    Expression,
    InconsistentDataError,
    MissingDataError,
    VideoDatasetReader,
    VideoSample,
    list_files,
    load_json,
    require_dir,
)

_SPLIT_ALIASES = {"val": "valid"}


def _exp_sort_key(exp_id: str) -> tuple[int, int | str]:
    return (0, int(exp_id)) if exp_id.isdigit() else (1, exp_id)


def _read_meta_expressions(path: Path) -> dict[str, dict]:
    meta = load_json(path, "meta_expressions.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise InconsistentDataError(f"meta_expressions.json has no 'videos' mapping: {path}")
    return meta["videos"]


class RefYouTubeVOSDataset(VideoDatasetReader):
    """Ref-YouTube-VOS videos with all their expressions.

    Args:
        root: the Ref-YouTube-VOS folder (holding `meta_expressions/` and `<split>/`).
        split: "valid" (alias "val"), "test" or "train".
        exclude_test_videos: for "valid", drop the videos of the test expressions file.
    """

    def __init__(self, root: Path | str, split: str = "valid", exclude_test_videos: bool = True) -> None:
        self.root = require_dir(Path(root), "Ref-YouTube-VOS root")
        self.split = _SPLIT_ALIASES.get(split, split)
        self.meta_path = self.root / "meta_expressions" / self.split / "meta_expressions.json"
        self._meta = _read_meta_expressions(self.meta_path)
        # The test videos' frames ship inside the valid archive.
        frames_split = "valid" if self.split == "test" and not (self.root / "test").is_dir() else self.split
        self.frames_dir = require_dir(self.root / frames_split / "JPEGImages", "Ref-YouTube-VOS frame folder")
        self.annotations_dir = self.root / frames_split / "Annotations"
        keys = set(self._meta)
        if self.split == "valid" and exclude_test_videos:
            test_path = self.root / "meta_expressions" / "test" / "meta_expressions.json"
            if test_path.is_file():
                keys -= set(_read_meta_expressions(test_path))
            else:
                warnings.warn(f"{test_path} not found: the valid split keeps the test videos "
                              "(the server's validation set has 202 videos)", stacklevel=2)
        self._keys = sorted(keys)

    def _load(self, key: str) -> VideoSample:
        video = self._meta[key]
        folder = self.frames_dir / key
        files = list_files(folder, FRAME_SUFFIXES, f"frame folder of video {key!r}")
        present = {Path(n).stem: folder / n for n in files}
        names = video.get("frames") or sorted(present)
        frame_paths = []
        for name in names:
            if name not in present:
                raise MissingDataError(
                    f"frame {name} listed in {self.meta_path} for video {key!r} is missing: {folder / (name + '.jpg')}")
            frame_paths.append(present[name])
        index_of = {name: i for i, name in enumerate(names)}
        annotations: dict[int, Path] = {}
        if (self.annotations_dir / key).is_dir():
            for png in list_files(self.annotations_dir / key, (".png",), f"annotation folder of video {key!r}"):
                stem = Path(png).stem
                if stem not in index_of:
                    raise InconsistentDataError(
                        f"annotation {self.annotations_dir / key / png} has no matching frame in {self.meta_path}")
                annotations[index_of[stem]] = self.annotations_dir / key / png
        expressions = []
        for exp_id in sorted(video.get("expressions", {}), key=_exp_sort_key):
            entry = video["expressions"][exp_id]
            if "exp" not in entry:
                raise InconsistentDataError(f"expression {exp_id} of video {key!r} has no 'exp' text: {self.meta_path}")
            obj = entry.get("obj_id")
            expressions.append(Expression(exp_id=str(exp_id), text=str(entry["exp"]),
                                          obj_id=int(obj) if obj is not None else None))
        if not expressions:
            raise InconsistentDataError(f"video {key!r} has no expressions in {self.meta_path}")
        return VideoSample(name=key, frame_paths=tuple(frame_paths), expressions=tuple(expressions),
                           annotation_paths=annotations, info={"split": self.split})

    def prediction_path(self, out_dir: Path | str, sample: VideoSample, frame_index: int,
                        exp_id: str | None = None) -> Path:
        """`<out_dir>/Annotations/<video>/<exp_id>/<frame>.png`, the server's layout."""
        if exp_id is None:
            raise ValueError("Ref-YouTube-VOS predictions are per expression: pass exp_id")
        return Path(out_dir) / "Annotations" / sample.name / str(exp_id) / f"{sample.frame_names[frame_index]}.png"
