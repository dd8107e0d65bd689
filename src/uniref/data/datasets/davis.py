"""DAVIS 2017 semi-supervised VOS, read from the released folders.

Layout under `root` (the `DAVIS/` folder, or its parent)::

    JPEGImages/480p/<seq>/00000.jpg ...
    Annotations/480p/<seq>/00000.png ...      palette PNGs, index = object id
    ImageSets/2017/{train,val,test-dev}.txt

Semi-supervised protocol (spec 13.3): every object is given by the first frame's annotation.
Object ids are that PNG's labels (0 = background and 255 = void are not objects).
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    InconsistentDataError,
    MissingDataError,
    VideoDatasetReader,
    VideoSample,
    first_appearances,
    read_lines,
    require_dir,
    scan_video_folder,
)

_SPLIT_ALIASES = {"test": "test-dev", "valid": "val"}


def find_davis_root(root: Path) -> Path:
    """Accept either the `DAVIS/` folder or a folder that contains it."""
    require_dir(root, "DAVIS root")
    if not (root / "ImageSets").is_dir() and (root / "DAVIS" / "ImageSets").is_dir():
        return root / "DAVIS"
    return root


def read_davis_split(root: Path, split: str, year: str = "2017") -> list[str]:
    """Sequence names of `ImageSets/<year>/<split>.txt`, in file order, without duplicates."""
    split = _SPLIT_ALIASES.get(split, split)
    names = read_lines(root / "ImageSets" / year / f"{split}.txt", f"DAVIS {year} {split} split file")
    return list(dict.fromkeys(names))


class DAVIS2017Dataset(VideoDatasetReader):
    """DAVIS 2017 videos with the first-frame masks of their objects.

    Args:
        root: the `DAVIS/` folder (or its parent).
        split: "val", "train", "test-dev" (alias "test") or "test-challenge".
        resolution: "480p" or "Full-Resolution".
        annotations: the annotation folder: "Annotations" (semi-supervised) or
            "Annotations_unsupervised".
    """

    def __init__(self, root: Path | str, split: str = "val", resolution: str = "480p",
                 annotations: str = "Annotations", year: str = "2017") -> None:
        self.root = find_davis_root(Path(root))
        self.split = _SPLIT_ALIASES.get(split, split)
        self.resolution = resolution
        self.frames_dir = require_dir(self.root / "JPEGImages" / resolution, "DAVIS frame folder")
        self.annotations_dir = require_dir(self.root / annotations / resolution, "DAVIS annotation folder")
        self._keys = read_davis_split(self.root, self.split, year)
        for name in self._keys:
            require_dir(self.frames_dir / name, f"frame folder of DAVIS sequence {name!r}")

    def _load(self, key: str) -> VideoSample:
        frames, annotations = scan_video_folder(self.frames_dir / key, self.annotations_dir / key, key)
        if 0 not in annotations:
            raise MissingDataError(
                f"first-frame annotation of DAVIS sequence {key!r} missing: "
                f"{self.annotations_dir / key / (frames[0].stem + '.png')}")
        first = first_appearances(annotations, stop_after_first=True)
        if not first:
            raise InconsistentDataError(f"first-frame annotation has no object: {annotations[0]}")
        return VideoSample(name=key, frame_paths=tuple(frames), first_masks=first,
                           annotation_paths=annotations, info={"split": self.split, "resolution": self.resolution})
