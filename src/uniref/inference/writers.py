"""Writing predictor results in the layouts users and benchmarks read.

Layouts (``root`` is the output folder):

* DAVIS: ``root/<video>/<frame>.png``, one palette PNG per frame (the DAVIS palette), pixel value = object id.
* Ref-YouTube-VOS: ``root/<video>/<obj_or_exp_id>/<frame>.png``, one mode "L" PNG per object and frame, 0/255.
* COCO: a JSON list of result entries with a compressed RLE ``segmentation`` (pycocotools), one entry per
  image, or per frame and object for videos.
* Overlays: the image or frame with coloured masks, ids and sentences; PNG per image/frame, mp4 and GIF for
  videos.

Every file is written atomically and an existing file is never replaced unless ``overwrite`` is set.
:class:`StagedOutput` adds all-or-nothing over a whole run: results go to a hidden folder inside the output
folder and are moved into place only when the run succeeds, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from uniref.inference.results import FrameResult, ImageResult
from uniref.io.atomic import atomic_path, ensure_writable_dir
from uniref.io.masks import save_binary_png, save_label_png
from uniref.io.overlay import overlay_masks
from uniref.io.rle import mask_to_coco_result, write_coco_results
from uniref.io.video import write_gif, write_video

__all__ = [
    "IMAGE_FORMATS",
    "OVERLAY_FORMATS",
    "VIDEO_FORMATS",
    "StagedOutput",
    "VideoResultWriter",
    "VideoWriteSummary",
    "coco_frame_entries",
    "coco_image_entry",
    "frame_overlay",
    "image_overlay",
    "write_coco_json",
    "write_davis_png",
    "write_overlay_png",
    "write_ytvos_pngs",
]

IMAGE_FORMATS = ("png", "coco")
VIDEO_FORMATS = ("davis", "ytvos", "coco")
OVERLAY_FORMATS = ("mp4", "gif", "png")

PathLike = str | os.PathLike[str]


def _check_name(name: str, what: str) -> str:
    """Reject names that would escape their folder or hide the file."""
    name = str(name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"{what} {name!r} cannot be used as a file or folder name")
    return name


# --------------------------------------------------------------------------- masks
def write_davis_png(root: PathLike, video: str, frame: str, label_map: np.ndarray, *, overwrite: bool = False) -> Path:
    """``root/<video>/<frame>.png``: an ``[H, W]`` uint8 label map as a DAVIS palette PNG."""
    path = Path(root) / _check_name(video, "video name") / f"{_check_name(frame, 'frame name')}.png"
    return save_label_png(path, label_map, overwrite=overwrite)


def write_ytvos_pngs(
    root: PathLike, video: str, frame: str, masks: Mapping[Any, np.ndarray], *, overwrite: bool = False
) -> list[Path]:
    """``root/<video>/<key>/<frame>.png`` for every ``key -> [H, W] bool`` (object or expression id), 0/255."""
    base = Path(root) / _check_name(video, "video name")
    frame = _check_name(frame, "frame name")
    return [
        save_binary_png(base / _check_name(str(key), "object id") / f"{frame}.png", mask, overwrite=overwrite)
        for key, mask in masks.items()
    ]


# --------------------------------------------------------------------------- COCO
def _xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)]


def coco_image_entry(result: ImageResult, image_id: int | str, **extra: Any) -> dict[str, Any]:
    """One COCO result entry for an image: RLE of ``result.mask``, its score and its box as ``[x, y, w, h]``."""
    return mask_to_coco_result(
        result.mask, image_id=image_id, score=result.score, bbox=_xyxy_to_xywh(result.box), **extra
    )


def coco_frame_entries(
    result: FrameResult, video: str, frame: str, *, texts: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """One COCO result entry per object reported on a frame (empty masks included, as an empty RLE).

    ``image_id`` is ``"<video>/<frame>"``; the entry also holds ``video``, ``frame``, ``frame_idx``,
    ``obj_id`` and, for sentences, ``text``.
    """
    texts = dict(result.texts) | dict(texts or {})
    entries = []
    for i, obj_id in enumerate(result.obj_ids):
        extra: dict[str, Any] = {"video": video, "frame": frame, "frame_idx": int(result.frame_idx),
                                 "obj_id": int(obj_id)}
        if obj_id in texts:
            extra["text"] = texts[obj_id]
        entries.append(
            mask_to_coco_result(result.masks[i], image_id=f"{video}/{frame}", score=float(result.scores[i]), **extra)
        )
    return entries


def write_coco_json(path: PathLike, entries: Iterable[Mapping[str, Any]], *, overwrite: bool = False) -> Path:
    """Write COCO result entries as one JSON list, atomically."""
    return write_coco_results(path, entries, overwrite=overwrite)


# --------------------------------------------------------------------------- overlays
def image_overlay(image: np.ndarray, result: ImageResult, *, caption: str | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8: the mask in colour 1 of the DAVIS palette, its box, and ``caption`` at the bottom."""
    out = overlay_masks(image, result.mask.astype(np.uint8), show_ids=False, caption=caption)
    if not result.box_empty:
        canvas = Image.fromarray(out)
        x0, y0, x1, y1 = (float(v) for v in result.box)
        width = max(1, round(min(out.shape[:2]) / 150))
        ImageDraw.Draw(canvas).rectangle((x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)), outline=(255, 255, 0), width=width)
        out = np.asarray(canvas).copy()
    return out


def frame_overlay(frame: np.ndarray, result: FrameResult, *, legend: Mapping[int, str] | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8: the frame's label map in palette colours with object ids, and ``legend``
    (e.g. the sentences of RVOS objects) listed top-left."""
    return overlay_masks(frame, result.label_map, legend=dict(legend) if legend else None)


def write_overlay_png(path: PathLike, image: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write an ``[H, W, 3]`` uint8 overlay as PNG, atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(tmp, format="PNG")
    return Path(path)


# --------------------------------------------------------------------------- all-or-nothing output
class StagedOutput:
    """All-or-nothing output of one run into ``out_dir``.

    Usage::

        with StagedOutput(out_dir, ["cat.png", "results.json"], overwrite=False) as stage:
            write_something(stage.root / "cat.png")
            ...
        # on success every planned entry is moved into out_dir; on error nothing is left

    ``entries`` are the top-level names (files or folders) the run creates in ``out_dir``. They are checked
    up front (:meth:`check`: the folder is writable, no entry exists unless ``overwrite``); results are
    written under a hidden staging folder in ``out_dir`` (same file system, so moving them is a rename).
    A folder ``out_dir`` that did not exist before and is still empty after a failure is removed again.
    """

    def __init__(self, out_dir: PathLike, entries: Iterable[str], *, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.entries = [_check_name(e, "output name") for e in entries]
        duplicates = sorted({e for e in self.entries if self.entries.count(e) > 1})
        if duplicates:
            raise ValueError(f"two inputs would write the same output {duplicates[0]!r} in {self.out_dir}")
        self.overwrite = overwrite
        self.root: Path | None = None
        self._created: Path | None = None
        self.committed: list[Path] = []

    def check(self) -> None:
        """Create ``out_dir`` if needed, check it is writable and that no planned entry exists (unless overwrite)."""
        if self._created is None:
            self._created = _first_missing(self.out_dir)
        ensure_writable_dir(self.out_dir)
        if not self.overwrite:
            for name in self.entries:
                dest = self.out_dir / name
                if dest.exists() or dest.is_symlink():
                    raise FileExistsError(f"output already exists: {dest} (pass --overwrite to replace it)")

    def __enter__(self) -> "StagedOutput":
        self.check()
        self.root = self.out_dir / f".uniref-partial-{secrets.token_hex(6)}"
        self.root.mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        except BaseException:
            self._abort()
            raise
        else:
            if exc_type is not None:
                self._abort()
        finally:
            if self.root is not None and self.root.exists():
                shutil.rmtree(self.root, ignore_errors=True)

    def _commit(self) -> None:
        assert self.root is not None
        missing = [name for name in self.entries if not (self.root / name).exists()]
        if missing:
            raise RuntimeError(f"the run produced no {missing[0]!r}; nothing was written to {self.out_dir}")
        for name in self.entries:
            dest = self.out_dir / name
            if dest.exists() or dest.is_symlink():
                if not self.overwrite:
                    raise FileExistsError(f"output already exists: {dest} (pass --overwrite to replace it)")
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                else:
                    dest.unlink()
            os.replace(self.root / name, dest)
            self.committed.append(dest)

    def _abort(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        created = self._created
        if created is not None and created.is_dir() and not any(p.is_file() for p in created.rglob("*")):
            shutil.rmtree(created, ignore_errors=True)


def _first_missing(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` (or itself) that does not exist yet; None if ``path`` exists."""
    path = path.absolute()
    if path.exists():
        return None
    missing = path
    for parent in path.parents:
        if parent.exists():
            break
        missing = parent
    return missing


# --------------------------------------------------------------------------- videos
@dataclass
class VideoWriteSummary:
    """What a :class:`VideoResultWriter` wrote (paths relative to its root)."""

    frames: int = 0
    obj_ids: set[int] = field(default_factory=set)
    entries: list[str] = field(default_factory=list)


class VideoResultWriter:
    """Writes a video's per-frame results in one pass, frame by frame.

    Args:
        video: the video's name (folder name of the DAVIS / Ref-YouTube-VOS layouts).
        formats: any of ``davis`` (``<video>/<frame>.png``), ``ytvos`` (``<video>/<obj>/<frame>.png``),
            ``coco`` (``<video>.json``). ``davis`` and ``ytvos`` share the ``<video>`` folder, so only one of
            them may be chosen.
        overlays: any of ``mp4`` (``<video>_overlay.mp4``), ``gif`` (``<video>_overlay.gif``), ``png``
            (``<video>_overlay/<frame>.png``).
        fps: frame rate of the overlay videos.
        legend: ``{obj_id: sentence}`` drawn on overlays.
        all_obj_ids: objects of the whole video; in the ``ytvos`` layout an object gets an empty mask on the
            frames before it starts, so every object folder holds every frame.

    The GIF is assembled in memory by Pillow (all its frames); every other output streams. Each file is
    atomic; for all-or-nothing over the whole video, write into a :class:`StagedOutput`'s ``root``.
    """

    def __init__(
        self,
        video: str,
        *,
        formats: Sequence[str] = ("davis",),
        overlays: Sequence[str] = (),
        fps: float = 24.0,
        legend: Mapping[int, str] | None = None,
        all_obj_ids: Sequence[int] | None = None,
    ) -> None:
        self.video = _check_name(video, "video name")
        self.formats = _unique(formats, VIDEO_FORMATS, "output format")
        self.overlays = _unique(overlays, OVERLAY_FORMATS, "overlay format")
        if "davis" in self.formats and "ytvos" in self.formats:
            raise ValueError("the davis and ytvos layouts both use the <video> folder; choose one of them")
        if not self.formats and not self.overlays:
            raise ValueError("nothing to write: give at least one output format or overlay")
        if not fps or fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.legend = dict(legend or {})
        self.all_obj_ids = sorted(int(i) for i in all_obj_ids) if all_obj_ids is not None else None

    def entries(self) -> list[str]:
        """The top-level names this writer creates in its root."""
        names = []
        if "davis" in self.formats or "ytvos" in self.formats:
            names.append(self.video)
        if "coco" in self.formats:
            names.append(f"{self.video}.json")
        for kind in self.overlays:
            names.append(f"{self.video}_overlay" if kind == "png" else f"{self.video}_overlay.{kind}")
        return names

    def write(
        self, root: PathLike, frames: Iterable[tuple[str, np.ndarray, FrameResult]], *, overwrite: bool = False
    ) -> VideoWriteSummary:
        """Write ``(frame_name, frame [H, W, 3] uint8, result)`` triples; returns what was written.

        The iterable is consumed once, so it may be a generator that runs the predictor lazily.
        """
        root = Path(root)
        summary = VideoWriteSummary(entries=self.entries())
        coco: list[dict[str, Any]] = []
        overlay_frames = self._per_frame(root, frames, summary, coco, overwrite)
        self._drain(root, overlay_frames, overwrite)
        if summary.frames == 0:
            raise ValueError(f"video {self.video} has no frames")
        if "coco" in self.formats:
            write_coco_json(root / f"{self.video}.json", coco, overwrite=overwrite)
        return summary

    def _per_frame(self, root, frames, summary, coco, overwrite) -> Iterator[np.ndarray]:
        for name, frame, result in frames:
            name = _check_name(name, "frame name")
            summary.frames += 1
            summary.obj_ids.update(int(o) for o in result.obj_ids)
            if "davis" in self.formats:
                write_davis_png(root, self.video, name, result.label_map, overwrite=overwrite)
            if "ytvos" in self.formats:
                masks = {int(o): result.masks[i] for i, o in enumerate(result.obj_ids)}
                for o in self.all_obj_ids or ():
                    masks.setdefault(o, np.zeros(result.label_map.shape, dtype=bool))
                write_ytvos_pngs(root, self.video, name, dict(sorted(masks.items())), overwrite=overwrite)
            if "coco" in self.formats:
                coco.extend(coco_frame_entries(result, self.video, name, texts=self.legend))
            if self.overlays:
                image = frame_overlay(frame, result, legend=self.legend)
                if "png" in self.overlays:
                    write_overlay_png(root / f"{self.video}_overlay" / f"{name}.png", image, overwrite=overwrite)
                yield image

    def _drain(self, root: Path, overlay_frames: Iterator[np.ndarray], overwrite: bool) -> None:
        """Run the per-frame loop to its end, feeding the overlay videos as it goes."""
        want_mp4, want_gif = "mp4" in self.overlays, "gif" in self.overlays
        gif_frames: list[np.ndarray] = []
        if want_mp4:
            stream = _tee_into(overlay_frames, gif_frames) if want_gif else overlay_frames
            try:
                write_video(root / f"{self.video}_overlay.mp4", stream, self.fps, overwrite=overwrite)
            except ValueError as error:
                if "no frames" not in str(error):
                    raise
        elif want_gif:
            gif_frames = list(overlay_frames)
        else:
            for _ in overlay_frames:
                pass
        if want_gif and gif_frames:
            write_gif(root / f"{self.video}_overlay.gif", gif_frames, self.fps, overwrite=overwrite)


def _tee_into(items: Iterable[np.ndarray], keep: list[np.ndarray]) -> Iterator[np.ndarray]:
    for item in items:
        keep.append(item)
        yield item


def _unique(values: Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    out = []
    for v in values:
        if v not in allowed:
            raise ValueError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
        if v not in out:
            out.append(v)
    return out

