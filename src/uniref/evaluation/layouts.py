"""Prediction folders in each benchmark's layout, written so that an interrupted run can resume.

* Videos are written into a hidden ``.<video>.partial`` folder beside their final place and renamed
  when every frame is there, so a folder with the video's name is always complete. A leftover
  ``.partial`` folder (a killed run) is deleted and the video redone.
* RIS/FSS entries are appended, one complete JSON line at a time, to a per-rank part file under
  ``parts/``; :func:`finalize_entries` merges the parts into ``predictions.jsonl`` (atomically).
* Submission zips are built deterministically (sorted names, fixed timestamps), so the same
  predictions always give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from uniref.data.datasets import VideoSample
from uniref.io.atomic import atomic_open, atomic_path

__all__ = [
    "ENTRIES_FILE",
    "EntryLog",
    "entry_files",
    "expected_video_files",
    "finalize_entries",
    "is_complete",
    "make_zip",
    "read_entries",
    "staged_folder",
    "video_folder",
    "video_frames",
    "videos_root",
]

ENTRIES_FILE = "predictions.jsonl"
PARTS_DIR = "parts"
PARTIAL_SUFFIX = ".partial"


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------


def videos_root(layout: str, unit_dir: Path) -> Path:
    """The folder holding one sub-folder per video."""
    return unit_dir / "Annotations" if layout in ("server", "refytvos") else unit_dir


def video_folder(layout: str, unit_dir: Path, video: str) -> Path:
    """Where one video's predictions go."""
    return videos_root(layout, unit_dir) / video


def video_frames(sample: VideoSample) -> list[int]:
    """Indices of the frames a video's predictions hold: the server's frames, or every frame."""
    if sample.output_frames is not None:
        return list(sample.output_frames)
    return list(range(len(sample)))


def expected_video_files(layout: str, sample: VideoSample) -> list[str]:
    """Paths, relative to the video folder, of every PNG a complete video holds."""
    names = [sample.frame_names[i] for i in video_frames(sample)]
    if layout == "refytvos":
        return [f"{e.exp_id}/{n}.png" for e in sample.expressions for n in names]
    return [f"{n}.png" for n in names]


def is_complete(folder: Path, expected: Iterable[str]) -> bool:
    """True when ``folder`` exists and holds every expected file."""
    return folder.is_dir() and all((folder / name).is_file() for name in expected)


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``final``; it becomes ``final`` when the block succeeds.

    A leftover staging folder of an earlier, interrupted run is deleted first; an incomplete ``final``
    (files deleted by hand) is replaced. On an exception the staging folder is removed.
    """
    staging = final.parent / f".{final.name}{PARTIAL_SUFFIX}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.rename(staging, final)


# --------------------------------------------------------------------------------------------------
# Entries (RIS / FSS)
# --------------------------------------------------------------------------------------------------


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn last line (a killed writer) is ignored."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                break  # torn last line
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from error
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError(f"{path}:{number}: a prediction line must be a JSON object with an 'id'")
            records.append(record)
    return records


def read_entries(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """``{entry id: record}`` of several prediction files (the first record of an id wins)."""
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        for record in _complete_lines(path):
            records.setdefault(str(record["id"]), record)
    return records


def entry_files(unit_dir: Path) -> list[Path]:
    """The prediction files of a unit folder: ``predictions.jsonl`` and any part files of an unfinished run."""
    files = [unit_dir / ENTRIES_FILE] if (unit_dir / ENTRIES_FILE).is_file() else []
    parts = unit_dir / PARTS_DIR
    if parts.is_dir():
        files += sorted(p for p in parts.glob("*.jsonl") if not p.name.startswith("."))
    return files


class EntryLog:
    """This rank's append-only prediction file of one unit, plus the ids any rank already wrote."""

    def __init__(self, unit_dir: Path, rank: int = 0) -> None:
        self.unit_dir = unit_dir
        self.path = unit_dir / PARTS_DIR / f"rank{rank}.jsonl"
        self._handle = None

    def done_ids(self) -> set[str]:
        """Ids already predicted, by this or any earlier run (merged file and every part file)."""
        return set(read_entries(entry_files(self.unit_dir)))

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one complete line and flush it, so a killed run loses at most the entry in progress."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _drop_torn_line(self.path)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _drop_torn_line(path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def finalize_entries(unit_dir: Path, order: Sequence[str]) -> Path:
    """Merge ``predictions.jsonl`` and every part file into ``predictions.jsonl``, in dataset order.

    ``order``: the unit's entry ids in dataset order; records of other ids (an earlier run without
    ``--limit``) are kept after them. The part files are removed once the merged file is in place.
    """
    files = entry_files(unit_dir)
    records = read_entries(files)
    position = {entry_id: i for i, entry_id in enumerate(order)}
    ordered = sorted(records, key=lambda i: (0, position[i], "") if i in position else (1, 0, i))
    target = unit_dir / ENTRIES_FILE
    with atomic_open(target, "w", overwrite=True) as handle:
        for entry_id in ordered:
            handle.write(json.dumps(records[entry_id], sort_keys=True) + "\n")
    parts = unit_dir / PARTS_DIR
    if parts.is_dir():
        shutil.rmtree(parts)
    return target


# --------------------------------------------------------------------------------------------------
# Submission zips
# --------------------------------------------------------------------------------------------------

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def make_zip(unit_dir: Path, layout: str, zip_layout: str, destination: Path) -> Path:
    """Zip a unit's video folders for a server, atomically and deterministically.

    ``zip_layout="annotations"`` stores ``Annotations/<video>/...`` (YouTube-VOS, MOSE,
    Ref-YouTube-VOS); ``"root"`` stores ``<video>/...`` at the top of the zip (the DAVIS server).
    Hidden entries (staging folders of an interrupted run) are left out.
    """
    root = videos_root(layout, unit_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no predictions to zip: {root}")
    prefix = "Annotations/" if zip_layout == "annotations" else ""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(".png"):
                continue
            path = Path(dirpath) / name
            files.append((path, prefix + path.relative_to(root).as_posix()))
    if not files:
        raise FileNotFoundError(f"no predictions to zip: {root} holds no PNG")
    with atomic_path(destination, overwrite=True) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, arcname in sorted(files, key=lambda item: item[1]):
                info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes())
    return destination
