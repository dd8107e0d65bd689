"""Atomic file output: a result file is either complete or absent, never half written.

Every writer of the package goes through :func:`atomic_path`: it hands out a temporary name in the
destination folder (same file system, so the final ``os.replace`` is atomic), and either renames it
onto the destination when the block succeeds or deletes it when the block raises. The temporary name
keeps the destination's suffix because PIL and PyAV pick the format from it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "OutputNotWritableError",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_overwrite",
    "ensure_writable_dir",
]

PathLike = str | os.PathLike[str]


class OutputNotWritableError(PermissionError):
    """An output folder or file cannot be created or written."""


def check_overwrite(path: PathLike, overwrite: bool) -> Path:
    """Refuse to replace an existing file unless ``overwrite`` is set.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: naming the path, when it exists and ``overwrite`` is False.
        IsADirectoryError: when the path is an existing folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output path is a folder, not a file: {path}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"output file already exists: {path} (pass overwrite=True to replace it)")
    return path


def ensure_writable_dir(path: PathLike, *, create: bool = True) -> Path:
    """Make sure ``path`` is a folder this process can create files in.

    The check writes and deletes a probe file, because permission bits alone do not tell about
    read-only mounts or ACLs.

    Raises:
        OutputNotWritableError: naming the folder, when it cannot be created or written.
        NotADirectoryError: when ``path`` (or a parent) is an existing file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output path exists and is not a folder: {path}")
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"output folder does not exist: {path}")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as error:
            raise NotADirectoryError(f"cannot create output folder {path}: a parent is a file") from error
        except OSError as error:
            raise OutputNotWritableError(f"cannot create output folder {path}: {error.strerror or error}") from error
    probe = path / f".uniref-write-probe-{secrets.token_hex(4)}"
    try:
        probe.touch(exist_ok=False)
    except OSError as error:
        raise OutputNotWritableError(f"output folder is not writable: {path} ({error.strerror or error})") from error
    probe.unlink(missing_ok=True)
    return path


def _temporary_sibling(path: Path) -> Path:
    # Hidden, unique, same folder and same suffix as the destination.
    return path.with_name(f".{path.stem}.{secrets.token_hex(6)}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = False, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write to; it replaces ``path`` only if the block succeeds.

    Example::

        with atomic_path("out/00000.png", overwrite=True) as tmp:
            image.save(tmp)

    Args:
        path: the final destination.
        overwrite: replace an existing file (otherwise :class:`FileExistsError`).
        make_parents: create missing parent folders.

    Raises:
        FileExistsError: the destination exists and ``overwrite`` is False.
        OutputNotWritableError: the destination folder cannot be created or written.
    """
    path = check_overwrite(path, overwrite)
    parent = path.parent
    if make_parents and not parent.exists():
        ensure_writable_dir(parent)
    tmp = _temporary_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written for {path}")
        if not overwrite and path.exists():
            # Someone created the file while we were writing; do not clobber it.
            raise FileExistsError(f"output file already exists: {path} (pass overwrite=True to replace it)")
        os.replace(tmp, path)
    except PermissionError as error:
        raise OutputNotWritableError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(
    path: PathLike, mode: str = "wb", *, overwrite: bool = False, encoding: str | None = None
) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` only when the block exits cleanly.

    Args:
        mode: ``"w"``/``"wb"`` (or with ``"+"``).
        encoding: for text modes; UTF-8 when not given.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open writes new files; mode must contain 'w', got {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_bytes(path: PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically. Returns the path."""
    with atomic_open(path, "wb", overwrite=overwrite) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically. Returns the path."""
    with atomic_open(path, "w", overwrite=overwrite) as handle:
        handle.write(text)
    return Path(path)
