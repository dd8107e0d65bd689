import numpy as np
import pytest
import torch
from PIL import Image

from uniref.io.video import (
    FrameFolderSource,
    FrameSizeError,
    IterableSource,
    VideoFileSource,
    VideoReadError,
    natural_sort_key,
    open_video,
    write_gif,
    write_video,
)


def _frames(count=6, height=32, width=48):
    # Flat colours survive H.264 almost exactly, so the round trip can be checked by value.
    return [np.full((height, width, 3), (20 * i, 255 - 20 * i, 100), np.uint8) for i in range(count)]


def test_natural_sort():
    names = ["frame10.png", "frame2.png", "frame1.png", "Frame3.png", "frame02b.png"]
    assert sorted(names, key=natural_sort_key) == ["frame1.png", "frame2.png", "frame02b.png", "Frame3.png",
                                                   "frame10.png"]


def test_folder_source_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(np.full((4, 5, 3), i, np.uint8)).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_video(tmp_path)
    assert isinstance(source, FrameFolderSource) and source.num_frames == 3 and len(source) == 3
    values = [int(frame[0, 0, 0]) for _, frame in source]
    assert values == [1, 2, 10]
    assert [source.frame_name(i) for i in range(3)] == ["frame1", "frame2", "frame10"]


def test_frames_of_different_sizes_name_the_frame(tmp_path):
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "00000.jpg")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "00001.jpg")
    with pytest.raises(FrameSizeError, match="00001.jpg"):
        list(open_video(tmp_path))
    with pytest.raises(FrameSizeError, match="frame 1"):
        list(open_video([np.zeros((4, 5, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)]))


def test_empty_and_missing_inputs(tmp_path):
    with pytest.raises(VideoReadError, match=str(tmp_path)):
        open_video(tmp_path)
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        open_video(tmp_path / "absent.mp4")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(VideoReadError, match="single image"):
        open_video(tmp_path / "x.png")


def test_iterables_arrays_and_tensors():
    frames = _frames(3)
    source = open_video(frames)
    assert isinstance(source, IterableSource) and source.num_frames == 3
    assert [i for i, _ in source] == [0, 1, 2]
    assert [i for i, _ in source] == [0, 1, 2]  # a list can be read twice
    generator = open_video(f for f in frames)
    assert generator.num_frames is None
    assert len(list(generator)) == 3
    with pytest.raises(RuntimeError, match="already read"):
        list(generator)
    stacked = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    out = [frame for _, frame in open_video(stacked)]
    np.testing.assert_array_equal(out[2], frames[2])
    with pytest.raises(ValueError, match="frame 1"):
        list(open_video([frames[0], np.zeros((2, 2, 2, 2))]))


def test_pyav_round_trip(tmp_path):
    frames = _frames()
    path = write_video(tmp_path / "clip.mp4", frames, fps=12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    source = open_video(path)
    assert isinstance(source, VideoFileSource)
    assert source.num_frames == 6 and source.fps == pytest.approx(12)
    decoded = list(source)
    assert [i for i, _ in decoded] == list(range(6))
    for (_, got), want in zip(decoded, frames):
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 6


def test_odd_sizes_are_padded_to_even(tmp_path):
    path = write_video(tmp_path / "odd.mp4", _frames(2, 15, 21), fps=5)
    _, frame = next(iter(open_video(path)))
    assert frame.shape == (16, 22, 3)


def test_truncated_video_names_file_and_frame(tmp_path):
    rng = np.random.default_rng(0)
    noisy = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(12)]
    path = write_video(tmp_path / "full.mp4", noisy, fps=10)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoReadError, match=r"cut\.mp4.*frame \d+"):
        list(open_video(cut))
    header_only = tmp_path / "stub.mp4"
    header_only.write_bytes(data[:40])
    with pytest.raises(VideoReadError, match="stub.mp4"):
        list(open_video(header_only))


def test_write_video_failure_leaves_no_file(tmp_path):
    frames = _frames(3) + [np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(FrameSizeError, match="frame 3"):
        write_video(tmp_path / "bad.mp4", frames, fps=5)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], fps=5)
    assert list(tmp_path.iterdir()) == []


def test_gif(tmp_path):
    path = write_gif(tmp_path / "a.gif", _frames(4), fps=10)
    with Image.open(path) as image:
        assert image.n_frames == 4 and image.info["duration"] == 100
    with pytest.raises(FrameSizeError, match="frame 1"):
        write_gif(tmp_path / "b.gif", [np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)], fps=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]
