"""Lazy video sources and video writers.

:func:`open_video` turns a video file (mp4/webm/mkv/avi..., decoded with PyAV frame by frame), a folder of
jpg/png frames (natural order: ``frame2`` before ``frame10``) or any iterable of images into a
:class:`VideoSource`. Iterating a source yields ``(index, frame)`` with ``frame`` a ``[H, W, 3]`` uint8 RGB
array; only the current frame is held in memory, so a 2,000-frame video costs what a 2-frame one does.

Every source checks that all frames have the size of the first and names the offending frame when one
does not. :func:`write_video` (H.264 mp4) and :func:`write_gif` are atomic: a failed write leaves no file.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .atomic import atomic_path
from .images import load_image

__all__ = [
    "FRAME_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FrameFolderSource",
    "FrameSizeError",
    "IterableSource",
    "VideoFileSource",
    "VideoReadError",
    "VideoSource",
    "natural_sort_key",
    "open_video",
    "write_gif",
    "write_video",
]

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".gif")


class VideoReadError(ValueError):
    """A video that cannot be opened or decoded (corrupt, truncated, no video stream)."""


class FrameSizeError(ValueError):
    """A frame whose size differs from the first frame of its video."""


def natural_sort_key(name: str) -> list[Any]:
    """Sort key that orders digit runs by value: ``frame2`` < ``frame10``; ties fall back to the text."""
    parts = re.split(r"(\d+)", name)
    return [(0, int(part)) if part.isdigit() else (1, part.lower()) for part in parts] + [(2, name)]


class VideoSource(ABC):
    """A video read lazily. Iterate it for ``(index, [H, W, 3] uint8 RGB frame)``.

    Attributes:
        name: what error messages call this video (its path, or a description).
    """

    name: str

    @property
    @abstractmethod
    def num_frames(self) -> int | None:
        """Number of frames when known without decoding (``None`` otherwise)."""

    @property
    def fps(self) -> float | None:
        """Frames per second when the source has a rate (video files), else ``None``."""
        return None

    def frame_name(self, index: int) -> str:
        """File stem to use for frame ``index`` in outputs (``00000`` style unless the source has names)."""
        return f"{index:05d}"

    def describe_frame(self, index: int) -> str:
        """How error messages name frame ``index``."""
        return f"frame {index} of {self.name}"

    @abstractmethod
    def _frames(self) -> Iterator[np.ndarray]:
        """Yield raw frames in order."""

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        first_hw: tuple[int, int] | None = None
        for index, frame in enumerate(self._frames()):
            hw = (int(frame.shape[0]), int(frame.shape[1]))
            if first_hw is None:
                first_hw = hw
            elif hw != first_hw:
                raise FrameSizeError(
                    f"{self.describe_frame(index)} is {hw[0]}x{hw[1]} (HxW) but the video's first frame is "
                    f"{first_hw[0]}x{first_hw[1]}; all frames of a video must have one size"
                )
            yield index, frame

    def __len__(self) -> int:
        count = self.num_frames
        if count is None:
            raise TypeError(f"the number of frames of {self.name} is not known before decoding")
        return count


class VideoFileSource(VideoSource):
    """A video file decoded lazily with PyAV (first video stream)."""

    def __init__(self, path: str | os.PathLike) -> None:
        import av

        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.exists():
            raise FileNotFoundError(f"video file not found: {self.path}")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise VideoReadError(
                        f"cannot read video {self.path}: no video stream found (not a video, or truncated/corrupt)"
                    )
                stream = container.streams.video[0]
                self._num_frames = int(stream.frames) or None
                rate = stream.average_rate or stream.guessed_rate
                self._fps = float(rate) if rate else None
                self.height = int(stream.codec_context.height)
                self.width = int(stream.codec_context.width)
                self.format_name = container.format.name
        except av.FFmpegError as error:
            raise VideoReadError(f"cannot open video {self.path}: {error}") from error

    @property
    def num_frames(self) -> int | None:
        return self._num_frames

    @property
    def fps(self) -> float | None:
        return self._fps

    def _frames(self) -> Iterator[np.ndarray]:
        import av

        index = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="rgb24")
                    index += 1
        except av.FFmpegError as error:
            raise VideoReadError(f"cannot decode {self.path}: decoding failed at frame {index} ({error})") from error
        # A cut or damaged file often just ends early (threaded decoding drops bad frames silently);
        # the container's index still lists every frame, so compare with it.
        if self._num_frames is not None and index < self._num_frames:
            raise VideoReadError(
                f"video {self.path} is truncated or corrupt: decoding failed at frame {index} "
                f"(its header lists {self._num_frames} frames)"
            )
        if index == 0:
            raise VideoReadError(f"no frame could be decoded from {self.path}")


class FrameFolderSource(VideoSource):
    """A folder of jpg/png frames, in natural order of their file names."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        if not self.folder.exists():
            raise FileNotFoundError(f"frame folder not found: {self.folder}")
        if not self.folder.is_dir():
            raise NotADirectoryError(f"not a folder of frames: {self.folder}")
        files = [
            entry
            for entry in self.folder.iterdir()
            if entry.suffix.lower() in FRAME_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
        ]
        if not files:
            raise VideoReadError(f"no frames (.jpg/.jpeg/.png) in folder {self.folder}")
        self.files = sorted(files, key=lambda entry: natural_sort_key(entry.name))

    @property
    def num_frames(self) -> int:
        return len(self.files)

    def frame_name(self, index: int) -> str:
        return self.files[index].stem

    def describe_frame(self, index: int) -> str:
        return f"frame {index} ({self.files[index]})"

    def _frames(self) -> Iterator[np.ndarray]:
        for path in self.files:
            yield load_image(path)


class IterableSource(VideoSource):
    """Frames from any iterable of images (arrays, tensors, PIL images or paths).

    A one-shot iterator (e.g. a generator or a live camera) can be iterated once; sequences any number
    of times.
    """

    def __init__(self, frames: Iterable[Any], *, name: str = "the frame iterable", fps: float | None = None) -> None:
        self._frames_in = frames
        self.name = name
        self._fps = fps
        self._one_shot = iter(frames) is frames
        self._consumed = False
        try:
            self._count: int | None = len(frames)  # type: ignore[arg-type]
        except TypeError:
            self._count = None

    @property
    def num_frames(self) -> int | None:
        return self._count

    @property
    def fps(self) -> float | None:
        return self._fps

    def _frames(self) -> Iterator[np.ndarray]:
        if self._one_shot:
            if self._consumed:
                raise RuntimeError(f"{self.name} is a one-shot iterator and was already read")
            self._consumed = True
        for index, frame in enumerate(self._frames_in):
            try:
                yield load_image(frame)
            except (ValueError, TypeError) as error:
                raise type(error)(f"frame {index} of {self.name}: {error}") from error


def _array_frames(video: Any) -> list[Any] | None:
    """Split a ``[T, H, W, 3]`` array or a ``[T, 3, H, W]``/``[T, H, W, 3]`` tensor into frames."""
    if isinstance(video, np.ndarray) and video.ndim == 4:
        return list(video)
    if type(video).__module__.startswith("torch") and hasattr(video, "unbind") and video.dim() == 4:
        return list(video.unbind(0))
    return None


def open_video(source: Any, *, fps: float | None = None) -> VideoSource:
    """Open a video lazily.

    Args:
        source: a :class:`VideoSource` (returned as is); a video file path; a folder of frames; a
            ``[T, H, W, 3]`` array or ``[T, 3, H, W]`` tensor; or any iterable of images.
        fps: frame rate to report for sources that have none (arrays, iterables).

    Raises:
        FileNotFoundError: the path does not exist. VideoReadError: the file cannot be opened, or the
        folder holds no frames.
    """
    if isinstance(source, VideoSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"video not found: {path}")
        if path.is_dir():
            return FrameFolderSource(path)
        if path.suffix.lower() in FRAME_SUFFIXES:
            raise VideoReadError(f"{path} is a single image, not a video; pass its folder or a video file")
        return VideoFileSource(path)
    frames = _array_frames(source)
    if frames is not None:
        return IterableSource(frames, name=f"array of shape {tuple(source.shape)}", fps=fps)
    if isinstance(source, Iterable) and not isinstance(source, (bytes, np.ndarray)):
        return IterableSource(source, fps=fps)
    raise TypeError(f"cannot read a video from {type(source).__name__}")


def _even_rgb(frame: np.ndarray) -> np.ndarray:
    # yuv420p needs even sides; repeat the last row/column rather than crop content away.
    height, width = frame.shape[:2]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


def write_video(
    path: str | os.PathLike,
    frames: Iterable[Any],
    fps: float,
    *,
    overwrite: bool = False,
    crf: int = 18,
) -> Path:
    """Encode frames as an H.264 mp4 (yuv420p, +faststart), atomically and frame by frame.

    Args:
        path: destination ``.mp4`` (``.mov``/``.mkv`` also work).
        frames: images (``[H, W, 3]`` uint8 arrays or anything :func:`load_image` reads), all one size.
            Odd sides are padded by one repeated row/column (H.264 4:2:0 needs even sides).
        fps: frame rate, > 0.
        crf: x264 quality (lower = better).

    Raises:
        FrameSizeError: a frame's size differs from the first (named by index); nothing is written.
        ValueError: no frames, or a bad fps/suffix.
    """
    import av

    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
        raise ValueError(f"write_video writes H.264 in .mp4/.mov/.mkv files; got {path}")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    options = {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
    with atomic_path(path, overwrite=overwrite) as tmp:
        with av.open(str(tmp), mode="w", options=options) as container:
            stream = None
            first_hw = None
            for index, frame in enumerate(frames):
                try:
                    array = load_image(frame)
                except (ValueError, TypeError) as error:
                    raise type(error)(f"frame {index} for {path}: {error}") from error
                hw = array.shape[:2]
                if stream is None:
                    first_hw = hw
                    array = _even_rgb(array)
                    stream = container.add_stream("libx264", rate=rate)
                    stream.width, stream.height = array.shape[1], array.shape[0]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": str(int(crf))}
                elif hw != first_hw:
                    raise FrameSizeError(
                        f"frame {index} for {path} is {hw[0]}x{hw[1]} (HxW) but the first frame is "
                        f"{first_hw[0]}x{first_hw[1]}"
                    )
                else:
                    array = _even_rgb(array)
                video_frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                for packet in stream.encode(video_frame):
                    container.mux(packet)
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                container.mux(packet)
    return path


def write_gif(
    path: str | os.PathLike, frames: Iterable[Any], fps: float, *, overwrite: bool = False, loop: int = 0
) -> Path:
    """Write frames as an animated GIF (Pillow), atomically.

    Args:
        fps: frame rate, > 0 (GIF stores delays in 10 ms steps).
        loop: 0 = loop forever.
    """
    path = Path(path)
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError(f"no frames to write to {path}") from None
    first_array = load_image(first)
    first_hw = first_array.shape[:2]

    def rest() -> Iterator[Image.Image]:
        for index, frame in enumerate(iterator, start=1):
            array = load_image(frame)
            if array.shape[:2] != first_hw:
                raise FrameSizeError(
                    f"frame {index} for {path} is {array.shape[0]}x{array.shape[1]} (HxW) but the first frame "
                    f"is {first_hw[0]}x{first_hw[1]}"
                )
            yield Image.fromarray(array)

    duration = max(int(round(1000.0 / fps)), 10)
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(first_array).save(
            tmp, format="GIF", save_all=True, append_images=rest(), duration=duration, loop=loop
        )
    return path
