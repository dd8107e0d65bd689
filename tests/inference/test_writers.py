"""Output layouts: DAVIS palette PNGs, Ref-YouTube-VOS binary PNGs, COCO RLE JSON, overlays (PNG, mp4, GIF),
and the all-or-nothing staging of a run."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from PIL import Image

from uniref.inference.results import FrameResult, ImageResult
from uniref.inference.writers import (
    StagedOutput,
    VideoResultWriter,
    coco_frame_entries,
    coco_image_entry,
    image_overlay,
    write_coco_json,
    write_davis_png,
    write_ytvos_pngs,
)
from uniref.io.palette import davis_palette, davis_palette_flat
from uniref.io.rle import decode_rle

H, W = 48, 64


def _labels(t: int) -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    lab[4:14, 3 + t : 15 + t] = 1
    lab[20:44, 24:56] = 2
    if t >= 2:
        lab[2:12, 44:60] = 7  # starts late
    return lab


def _result(t: int) -> FrameResult:
    lab = _labels(t)
    ids = [1, 2] + ([7] if t >= 2 else [])
    return FrameResult(
        frame_idx=t,
        obj_ids=ids,
        masks=np.stack([lab == o for o in ids]),
        scores=np.linspace(0.9, 0.5, len(ids)).astype(np.float32),
        label_map=lab,
    )


def _frame(t: int) -> np.ndarray:
    rng = np.random.default_rng(t)
    return rng.integers(90, 110, (H, W, 3), dtype=np.uint8)


def test_davis_layout_palette_and_no_overwrite(tmp_path):
    lab = _labels(0)
    path = write_davis_png(tmp_path, "bear", "00003", lab)
    assert path == tmp_path / "bear" / "00003.png"
    with Image.open(path) as im:
        assert im.mode == "P"
        assert im.getpalette()[:768] == davis_palette_flat()
        np.testing.assert_array_equal(np.asarray(im), lab)
    assert davis_palette()[1].tolist() == [128, 0, 0] and davis_palette()[2].tolist() == [0, 128, 0]
    with pytest.raises(FileExistsError, match="00003.png"):
        write_davis_png(tmp_path, "bear", "00003", np.zeros_like(lab))
    write_davis_png(tmp_path, "bear", "00003", np.zeros_like(lab), overwrite=True)
    assert not np.asarray(Image.open(path)).any()
    with pytest.raises(ValueError, match="video name"):
        write_davis_png(tmp_path, "../escape", "00000", lab)


def test_ytvos_layout_binary_pngs(tmp_path):
    res = _result(3)
    masks = {o: res.masks[i] for i, o in enumerate(res.obj_ids)}
    paths = write_ytvos_pngs(tmp_path, "vid", "00010", masks)
    assert paths == [tmp_path / "vid" / str(o) / "00010.png" for o in res.obj_ids]
    for o, p in zip(res.obj_ids, paths):
        with Image.open(p) as im:
            assert im.mode == "L"
            values = np.asarray(im)
        assert set(np.unique(values).tolist()) <= {0, 255}
        np.testing.assert_array_equal(values == 255, res.label_map == o)


def test_coco_rle_round_trip_frames_and_images(tmp_path):
    entries = []
    for t in range(3):
        entries += coco_frame_entries(_result(t), "vid", f"{t:05d}", texts={7: "the late one"})
    assert len(entries) == 2 + 2 + 3  # one per frame and object
    path = write_coco_json(tmp_path / "vid.json", entries)
    loaded = json.loads(path.read_text())
    for entry in loaded:
        t, o = entry["frame_idx"], entry["obj_id"]
        np.testing.assert_array_equal(decode_rle(entry["segmentation"]), _labels(t) == o)
        assert entry["image_id"] == f"vid/{t:05d}" and entry["video"] == "vid"
        assert (entry.get("text") == "the late one") == (o == 7)
        ys, xs = np.nonzero(_labels(t) == o)
        assert entry["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    with pytest.raises(FileExistsError):
        write_coco_json(path, entries)

    mask = _labels(0) == 2
    image_result = ImageResult(mask, 0.75, np.array([24.0, 20.0, 56.0, 44.0]), 3)
    entry = coco_image_entry(image_result, "img7", text="the green one")
    np.testing.assert_array_equal(decode_rle(entry["segmentation"]), mask)
    assert entry["bbox"] == [24.0, 20.0, 32.0, 24.0] and entry["score"] == 0.75 and entry["text"] == "the green one"


def test_image_overlay_draws_mask_box_and_caption():
    image = np.full((H, W, 3), 100, np.uint8)
    mask = _labels(0) == 1
    out = image_overlay(image, ImageResult(mask, 0.9, np.array([3.0, 4.0, 15.0, 14.0]), 0), caption="a cat")
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    inside = out[8, 8].astype(int)
    assert inside[0] > 100 and inside[1] < 100  # blended towards palette colour 1 (red)
    assert (out[4, 3:15] == [255, 255, 0]).all(axis=-1).any()  # yellow box edge
    assert not np.array_equal(out[-3:], image[-3:])  # caption band


def test_video_writer_davis_coco_and_overlays_read_back(tmp_path):
    writer = VideoResultWriter("clip", formats=["davis", "coco"], overlays=["mp4", "gif", "png"], fps=5,
                               legend={7: "the late one"})
    assert writer.entries() == ["clip", "clip.json", "clip_overlay.mp4", "clip_overlay.gif", "clip_overlay"]
    summary = writer.write(tmp_path, ((f"{t:05d}", _frame(t), _result(t)) for t in range(4)))
    assert summary.frames == 4 and summary.obj_ids == {1, 2, 7}
    assert sorted(p.name for p in (tmp_path / "clip").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    for t in range(4):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "clip" / f"{t:05d}.png")), _labels(t))
    assert len(json.loads((tmp_path / "clip.json").read_text())) == 10

    with av.open(str(tmp_path / "clip_overlay.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 4 and decoded[0].shape == (H, W, 3)
    # object 2's fill (palette green, alpha 0.5 over grey ~100) survives H.264: most of its interior is green
    interior = decoded[1][24:40, 28:52].reshape(-1, 3).astype(int)
    green = (interior[:, 1] > interior[:, 0] + 30) & (interior[:, 1] > interior[:, 2] + 30)
    assert green.mean() > 0.4
    outside = decoded[1][0:3, 0:3].reshape(-1, 3).astype(int)
    assert (np.abs(outside - 100) < 20).all()
    with Image.open(tmp_path / "clip_overlay.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (W, H)
    pngs = sorted((tmp_path / "clip_overlay").iterdir())
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(4)]
    first = np.asarray(Image.open(pngs[0]))
    assert first.shape == (H, W, 3) and not np.array_equal(first, _frame(0))


def test_video_writer_ytvos_fills_frames_before_an_object_starts(tmp_path):
    writer = VideoResultWriter("clip", formats=["ytvos"], all_obj_ids=[1, 2, 7])
    writer.write(tmp_path, ((f"{t:05d}", _frame(t), _result(t)) for t in range(3)))
    for o in (1, 2, 7):
        assert sorted(p.name for p in (tmp_path / "clip" / str(o)).iterdir()) == [f"{t:05d}.png" for t in range(3)]
    assert not np.asarray(Image.open(tmp_path / "clip" / "7" / "00000.png")).any()
    assert np.asarray(Image.open(tmp_path / "clip" / "7" / "00002.png")).any()
    with pytest.raises(ValueError, match="choose one"):
        VideoResultWriter("clip", formats=["davis", "ytvos"])


def test_staged_output_is_all_or_nothing(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with StagedOutput(out, ["a.png", "vid"]) as stage:
            (stage.root / "a.png").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()  # created for the run, removed with it

    with StagedOutput(out, ["a.png", "vid"]) as stage:
        (stage.root / "a.png").write_bytes(b"first")
        (stage.root / "vid").mkdir()
        (stage.root / "vid" / "00000.png").write_bytes(b"f0")
        (stage.root / "vid" / "00001.png").write_bytes(b"f1")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "vid"]  # no staging folder left

    with pytest.raises(FileExistsError, match="a.png"):
        StagedOutput(out, ["a.png"]).check()
    with StagedOutput(out, ["a.png", "vid"], overwrite=True) as stage:
        (stage.root / "a.png").write_bytes(b"second")
        (stage.root / "vid").mkdir()
        (stage.root / "vid" / "00000.png").write_bytes(b"g0")
    assert (out / "a.png").read_bytes() == b"second"
    assert sorted(p.name for p in (out / "vid").iterdir()) == ["00000.png"]  # the old folder was replaced
    with pytest.raises(ValueError, match="same output"):
        StagedOutput(out, ["x.png", "x.png"])
