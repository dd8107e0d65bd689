import os

import pytest

from uniref.io.atomic import (
    OutputNotWritableError,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_overwrite,
    ensure_writable_dir,
)


def _visible(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_creates_parents_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    assert _visible(target.parent) == ["out.txt"]


def test_failure_inside_block_leaves_no_file(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target, "wb") as handle:
            handle.write(b"partial data")
            raise RuntimeError("boom")
    assert _visible(tmp_path) == []


def test_failure_keeps_the_previous_file_intact(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(ValueError):
        with atomic_path(target, overwrite=True) as tmp:
            tmp.write_bytes(b"new but broken")
            raise ValueError("encoder failed")
    assert target.read_bytes() == b"old"
    assert _visible(tmp_path) == ["out.bin"]


def test_refuses_to_overwrite_unless_asked(tmp_path):
    target = tmp_path / "user.txt"
    target.write_text("precious")
    with pytest.raises(FileExistsError, match="user.txt"):
        atomic_write_text(target, "new")
    assert target.read_text() == "precious"
    atomic_write_text(target, "new", overwrite=True)
    assert target.read_text() == "new"
    with pytest.raises(IsADirectoryError):
        check_overwrite(tmp_path, overwrite=True)


def test_temporary_keeps_the_suffix(tmp_path):
    with atomic_path(tmp_path / "frame.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"x")
    assert (tmp_path / "frame.png").read_bytes() == b"x"


def test_block_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="nothing was written"):
        with atomic_path(tmp_path / "x.txt"):
            pass
    assert not (tmp_path / "x.txt").exists()


def test_output_folder_under_a_file_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match="file"):
        ensure_writable_dir(blocker)
    with pytest.raises((NotADirectoryError, OutputNotWritableError)) as info:
        ensure_writable_dir(blocker / "sub")
    assert str(blocker) in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_folder_is_reported(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputNotWritableError, match="ro"):
            ensure_writable_dir(folder)
        with pytest.raises(OutputNotWritableError, match="ro"):
            atomic_write_text(folder / "x.txt", "data")
    finally:
        folder.chmod(0o700)


def test_ensure_writable_dir_creates_and_returns(tmp_path):
    folder = ensure_writable_dir(tmp_path / "new" / "deep")
    assert folder.is_dir() and _visible(folder) == []
    with pytest.raises(FileNotFoundError):
        ensure_writable_dir(tmp_path / "absent", create=False)
