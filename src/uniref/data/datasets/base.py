"""Shared pieces of the dataset readers: sample dataclasses, lazy mask sources, layout checks.

Readers list their entries from the dataset's own index files (pickles, json, split lists,
folder listings) and never decode an image or a mask until a sample asks for it. Every
problem with the files on disk raises a :class:`DatasetError` whose message names the path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from PIL import Image

from uniref.io.images import load_image
from uniref.io.masks import read_png_indices

FRAME_SUFFIXES = (".jpg", ".jpeg")
VOID_LABEL = 255  # DAVIS-style "ignore" pixels; never an object id


class DatasetError(Exception):
    """Base class of every dataset-reading error (the message always names the offending path)."""


class MissingDataError(DatasetError, FileNotFoundError):
    """A file or folder the layout requires is absent."""


class InconsistentDataError(DatasetError, ValueError):
    """Files exist but contradict each other (e.g. an annotation without its frame)."""


# ----------------------------------------------------------------------------------------------
# Low-level file helpers
# ----------------------------------------------------------------------------------------------


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MissingDataError(f"{what} not found: {path}")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingDataError(f"{what} not found: {path}")
    return path


def first_existing(candidates: Sequence[Path], what: str, *, is_dir: bool = False) -> Path:
    """Return the first candidate that exists; the error lists every place that was tried."""
    for candidate in candidates:
        if (candidate.is_dir() if is_dir else candidate.is_file()):
            return candidate
    tried = "\n  ".join(str(c) for c in candidates)
    raise MissingDataError(f"{what} not found; looked for:\n  {tried}")


def read_lines(path: Path, what: str) -> list[str]:
    """Non-empty, stripped lines of a text list file (split files, class lists)."""
    require_file(path, what)
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def load_json(path: Path, what: str) -> Any:
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise InconsistentDataError(f"{what} is not valid JSON: {path} ({error})") from error


def list_files(directory: Path, suffixes: Sequence[str], what: str) -> list[str]:
    """Sorted file names in `directory` whose suffix (case-insensitive) is in `suffixes`."""
    require_dir(directory, what)
    return sorted(p.name for p in directory.iterdir() if p.suffix.lower() in suffixes and p.is_file())


def read_rgb(path: Path) -> np.ndarray:
    """Image as uint8 RGB `[H, W, 3]`, EXIF orientation applied like detectron2's `read_image`."""
    require_file(path, "image")
    return load_image(path)


def read_label_png(path: Path) -> np.ndarray:
    """Object-id map of a palette / grey-level annotation PNG, `[H, W]` uint8.

    Palette indices are the object ids in DAVIS, YouTube-VOS, LVOS and MOSE.
    """
    require_file(path, "annotation PNG")
    return read_png_indices(path)


def object_ids(label: np.ndarray) -> list[int]:
    """Sorted object ids present in a label map (background 0 and void 255 excluded)."""
    ids = np.unique(label)
    return [int(i) for i in ids if i != 0 and i != VOID_LABEL]


# ----------------------------------------------------------------------------------------------
# Lazy mask sources
# ----------------------------------------------------------------------------------------------


class MaskSource(Protocol):
    """Anything that decodes to a binary mask on demand."""

    def load(self) -> np.ndarray:  # bool [H, W]
        ...


@dataclass(frozen=True)
class PngMask:
    """A binary mask stored in a PNG.

    `object_id` selects one label of a palette / label PNG. With `object_id=None` the PNG is a
    grey (or colour) foreground mask thresholded like FSS-1000's official conversion:
    `grey / 255 > 0.5`.
    """

    path: Path
    object_id: int | None = None

    def load(self) -> np.ndarray:
        """Binary mask `[H, W]` bool."""
        if self.object_id is not None:
            return read_label_png(self.path) == self.object_id
        require_file(self.path, "mask PNG")
        with Image.open(self.path) as image:
            grey = np.asarray(image.convert("L"))
        return grey > 127  # x / 255 > 0.5  <=>  x >= 128 for uint8


@dataclass(frozen=True)
class CocoMask:
    """A COCO `segmentation` (polygon list, uncompressed or compressed RLE), decoded lazily."""

    segmentation: Any
    height: int
    width: int

    def rle(self) -> dict[str, Any]:
        """Compressed RLE of the whole object (polygons merged), as pycocotools returns it."""
        from pycocotools import mask as mask_utils

        seg = self.segmentation
        if isinstance(seg, list):
            if not seg:
                raise InconsistentDataError("COCO segmentation is an empty polygon list")
            return mask_utils.merge(mask_utils.frPyObjects(seg, self.height, self.width))
        if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            return mask_utils.frPyObjects(seg, self.height, self.width)
        if isinstance(seg, dict):
            counts = seg["counts"]
            return {"size": list(seg["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
        raise InconsistentDataError(f"unsupported COCO segmentation type {type(seg).__name__}")

    def load(self) -> np.ndarray:
        """Binary mask `[H, W]` bool."""
        from pycocotools import mask as mask_utils

        return mask_utils.decode(self.rle()).astype(bool)


# ----------------------------------------------------------------------------------------------
# Samples
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Support:
    """One support (reference) image of a few-shot query, with its mask."""

    image_path: Path
    mask: MaskSource

    def load_image(self) -> np.ndarray:
        """RGB `[H, W, 3]` uint8."""
        return read_rgb(self.image_path)

    def load_mask(self) -> np.ndarray:
        """Binary mask `[H, W]` bool."""
        return self.mask.load()


@dataclass(frozen=True)
class ImageSample:
    """One evaluation entry of an image benchmark.

    RIS: one referred object with one expression (`expression` set, `supports` empty).
    FSS: one query image with its k supports (`supports` set, `expression` None).
    `mask` is the ground truth of the entry, decoded only by :meth:`load_mask`.
    """

    sample_id: str
    image_path: Path
    mask: MaskSource | None
    expression: str | None = None
    supports: tuple[Support, ...] = ()
    height: int | None = None
    width: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def load_image(self) -> np.ndarray:
        """RGB `[H, W, 3]` uint8."""
        return read_rgb(self.image_path)

    def load_mask(self) -> np.ndarray:
        """Ground-truth binary mask `[H, W]` bool."""
        if self.mask is None:
            raise MissingDataError(f"sample {self.sample_id} has no ground-truth mask ({self.image_path})")
        return self.mask.load()


@dataclass(frozen=True)
class Expression:
    """A referring expression of a video; `obj_id` is None where the split hides it."""

    exp_id: str
    text: str
    obj_id: int | None = None


@dataclass(frozen=True)
class VideoSample:
    """One video of a VOS / RVOS benchmark.

    - `first_masks[obj_id] = (frame_index, png_path)`: where the object's given mask is (its
      first annotated frame; objects may start late). Empty for RVOS.
    - `annotation_paths[frame_index]`: every ground-truth PNG of the video the layout provides.
    - `output_frames`: indices of the frames the benchmark scores / the server expects, or None
      when every frame is expected.
    """

    name: str
    frame_paths: tuple[Path, ...]
    first_masks: Mapping[int, tuple[int, Path]] = field(default_factory=dict)
    expressions: tuple[Expression, ...] = ()
    annotation_paths: Mapping[int, Path] = field(default_factory=dict)
    output_frames: tuple[int, ...] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def frame_names(self) -> tuple[str, ...]:
        """Frame names without extension (the names prediction PNGs take)."""
        return tuple(p.stem for p in self.frame_paths)

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.first_masks))

    def objects_starting_at(self, frame_index: int) -> tuple[int, ...]:
        """Ids of the objects whose given mask is on `frame_index`."""
        return tuple(sorted(o for o, (t, _) in self.first_masks.items() if t == frame_index))

    def load_frame(self, frame_index: int) -> np.ndarray:
        """RGB `[H, W, 3]` uint8."""
        return read_rgb(self.frame_paths[frame_index])

    def load_first_mask(self, obj_id: int) -> np.ndarray:
        """The given mask of one object, `[H, W]` bool, on frame `first_masks[obj_id][0]`."""
        if obj_id not in self.first_masks:
            raise KeyError(f"video {self.name} has no object {obj_id}; objects: {self.object_ids}")
        return PngMask(self.first_masks[obj_id][1], obj_id).load()

    def load_annotation(self, frame_index: int) -> np.ndarray:
        """Ground-truth object-id map of one frame, `[H, W]` integer."""
        if frame_index not in self.annotation_paths:
            raise MissingDataError(
                f"video {self.name} has no annotation for frame {frame_index} "
                f"({self.frame_paths[frame_index]})"
            )
        return read_label_png(self.annotation_paths[frame_index])


# ----------------------------------------------------------------------------------------------
# Reader base
# ----------------------------------------------------------------------------------------------

SampleT = TypeVar("SampleT")


class DatasetReader(Sequence[SampleT], Generic[SampleT]):
    """A lazy sequence of samples. Subclasses fill `self._keys` and implement `_load`."""

    _keys: list[Any]

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: int) -> SampleT:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError(f"{type(self).__name__} indices must be integers, got {type(index).__name__}")
        if not -len(self._keys) <= index < len(self._keys):
            raise IndexError(f"{type(self).__name__} index {index} out of range (size {len(self._keys)})")
        return self._load(self._keys[index])

    def __iter__(self) -> Iterator[SampleT]:
        for key in self._keys:
            yield self._load(key)

    def _load(self, key: Any) -> SampleT:
        raise NotImplementedError


class VideoDatasetReader(DatasetReader[VideoSample]):
    """Video readers: entries are video names, looked up by position or by name."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def by_name(self, name: str) -> VideoSample:
        if name not in self._keys:
            raise KeyError(f"{type(self).__name__}: no video named {name!r}")
        return self._load(name)

    def prediction_path(self, out_dir: Path | str, sample: VideoSample, frame_index: int,
                        exp_id: str | None = None) -> Path:
        """Where the prediction PNG of one frame goes: `<out_dir>/<video>/<frame>.png`
        (the DAVIS / LVOS / MOSE evaluation layout)."""
        return Path(out_dir) / sample.name / f"{sample.frame_names[frame_index]}.png"


def scan_video_folder(frames_dir: Path, annotations_dir: Path | None, video: str,
                      *, frames_what: str = "frame folder") -> tuple[list[Path], dict[int, Path]]:
    """List a video's frames and its annotation PNGs, matched by file stem.

    Returns `(frame_paths, {frame_index: annotation_path})`. An annotation PNG whose frame is
    missing is an error, since the layout pairs every PNG with a frame.
    """
    names = list_files(frames_dir, FRAME_SUFFIXES, f"{frames_what} of video {video!r}")
    if not names:
        raise MissingDataError(f"no frames (.jpg) in {frames_what} of video {video!r}: {frames_dir}")
    frame_paths = [frames_dir / n for n in names]
    index_of = {p.stem: i for i, p in enumerate(frame_paths)}
    annotations: dict[int, Path] = {}
    if annotations_dir is not None and annotations_dir.is_dir():
        for png in list_files(annotations_dir, (".png",), f"annotation folder of video {video!r}"):
            stem = Path(png).stem
            if stem not in index_of:
                raise InconsistentDataError(
                    f"annotation {annotations_dir / png} has no matching frame {stem}.jpg in {frames_dir}"
                )
            annotations[index_of[stem]] = annotations_dir / png
    return frame_paths, annotations


def first_appearances(annotations: Mapping[int, Path], wanted: Sequence[int] | None = None,
                      *, stop_after_first: bool = False) -> dict[int, tuple[int, Path]]:
    """Read annotation PNGs in frame order and record where each object first appears.

    `wanted`: stop as soon as all these ids are found. `stop_after_first`: read only the first
    annotated frame (the semi-supervised protocol of DAVIS and MOSE gives masks there).
    """
    found: dict[int, tuple[int, Path]] = {}
    for frame_index in sorted(annotations):
        path = annotations[frame_index]
        for obj in object_ids(read_label_png(path)):
            found.setdefault(obj, (frame_index, path))
        if stop_after_first or (wanted is not None and all(w in found for w in wanted)):
            break
    return found
