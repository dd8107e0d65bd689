"""``uniref ris | fss | vos | rvos`` end to end on tiny inputs: layouts, summaries, progress, overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from inference_fixtures import (  # noqa: F401  (fixtures)
    cached_model,
    files_under,
    make_image,
    make_video,
    run_cli,
    tiny_weights,
)
from uniref.io.masks import save_binary_png, save_label_png
from uniref.io.rle import decode_rle
from uniref.io.video import write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clip(tmp_path):
    """A 6-frame folder video whose object 3 enters at frame 2, with the true label maps as DAVIS PNGs."""
    frames, labels = make_video(t=6)
    folder = tmp_path / "clip"
    folder.mkdir()
    masks = tmp_path / "annotations"
    masks.mkdir()
    for i, (f, lab) in enumerate(zip(frames, labels)):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", quality=95)
        save_label_png(masks / f"{i:05d}.png", lab)
    return {"frames": folder, "masks": masks, "labels": labels, "video": frames, "dir": tmp_path}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_ris_with_named_config_writes_mask_overlay_and_coco(tmp_path, tiny_weights, capsys):
    image, _ = make_image(seed=3)
    Image.fromarray(image).save(tmp_path / "street.png")
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["ris", tmp_path / "street.png", "--text", "The man in the RED shirt!", "--config",
                               "tiny", "--weights", tiny_weights, "--out", out, "--overlay"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in files_under(out)) == ["results.json", "street.png", "street_overlay.png"]
    line, = stdout.strip().splitlines()  # one summary line per image
    assert line.startswith(f"{tmp_path / 'street.png'}: score ") and " box [" in line
    assert str(out / "street.png") in line and str(out / "results.json") in line
    with Image.open(out / "street.png") as im:
        assert im.mode == "L" and im.size == (56, 40)
        mask = np.asarray(im)
    assert set(np.unique(mask).tolist()) <= {0, 255}
    entry, = json.loads((out / "results.json").read_text())
    np.testing.assert_array_equal(decode_rle(entry["segmentation"]), mask == 255)
    assert entry["image_id"] == "street" and entry["text"] == "The man in the RED shirt!"
    assert f"score {entry['score']:.3f}" in line
    assert np.asarray(Image.open(out / "street_overlay.png")).shape == (40, 56, 3)


def test_fss_two_queries_two_shots_bfloat16(tmp_path, tiny_weights, capsys):
    paths = []
    for seed in (1, 2):
        image, mask = make_image(seed=seed)
        Image.fromarray(image).save(tmp_path / f"shot{seed}.png")
        save_binary_png(tmp_path / f"shot{seed}_mask.png", mask)
        query, _ = make_image(seed=seed + 10)
        Image.fromarray(query).save(tmp_path / f"query{seed}.jpg")
        paths.append(tmp_path / f"query{seed}.jpg")
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["fss", *paths, "--example", tmp_path / "shot1.png", tmp_path / "shot1_mask.png",
                               "--example", tmp_path / "shot2.png", tmp_path / "shot2_mask.png",
                               "--weights", tiny_weights, "--out", out, "--dtype", "bfloat16", "--format", "png"],
                              capsys)
    assert rc == 0, err
    assert sorted(p.name for p in files_under(out)) == ["query1.png", "query2.png"]
    lines = stdout.strip().splitlines()
    assert len(lines) == 2 and all(" score " in ln and " box [" in ln for ln in lines)


def test_vos_folder_masks_start_objects_late_with_all_outputs(clip, tiny_weights, capsys):
    out = clip["dir"] / "out"
    rc, stdout, err = run_cli(["vos", clip["frames"], "--masks", clip["masks"], "--weights", tiny_weights, "--out",
                               out, "--format", "davis", "--format", "coco", "--overlay-format", "mp4",
                               "--overlay-format", "gif", "--overlay-format", "png", "--progress"], capsys)
    assert rc == 0, err
    assert any("6/6" in line for line in err), err  # the progress bar, its total known from the folder
    names = [f"{i:05d}.png" for i in range(6)]
    assert sorted(p.name for p in (out / "clip").iterdir()) == names
    assert sorted(p.name for p in (out / "clip_overlay").iterdir()) == names
    assert sorted(p.name for p in out.iterdir()) == ["clip", "clip.json", "clip_overlay", "clip_overlay.gif",
                                                     "clip_overlay.mp4"]
    maps = [np.asarray(Image.open(out / "clip" / n)) for n in names]
    assert Image.open(out / "clip" / names[0]).mode == "P"
    for o in (1, 2):  # given on frame 0 (resized to the network size and back)
        assert _iou(maps[0] == o, clip["labels"][0] == o) > 0.85
    assert 3 not in maps[0] and 3 not in maps[1]
    assert _iou(maps[2] == 3, clip["labels"][2] == 3) > 0.85  # object 3 starts where its PNG first shows it
    entries = json.loads((out / "clip.json").read_text())
    assert len(entries) == 2 + 2 + 4 * 3 and {e["obj_id"] for e in entries if e["frame_idx"] < 2} == {1, 2}
    with av.open(str(out / "clip_overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6
    assert Image.open(out / "clip_overlay.gif").n_frames == 6
    assert stdout.strip().splitlines() == [
        f"{clip['frames']}: 6 frames, objects [1, 2, 3] -> {out / 'clip'}/, {out / 'clip.json'}, "
        f"{out / 'clip_overlay.mp4'}, {out / 'clip_overlay.gif'}, {out / 'clip_overlay'}/"
    ]


def test_vos_video_file_and_overwrite(clip, tiny_weights, cached_model, capsys):
    video = write_video(clip["dir"] / "walk.mp4", clip["video"][:3], fps=8)
    save_label_png(clip["dir"] / "first.png", clip["labels"][0])
    out = clip["dir"] / "out"
    argv = ["vos", video, "--masks", clip["dir"] / "first.png", "--weights", tiny_weights, "--out", out,
            "--format", "ytvos", "--preset", "mose", "--progress"]
    rc, _, err = run_cli(argv + ["--engine", "reference"], capsys)
    assert rc == 0, err
    assert any("3/3" in line for line in err), err  # total from the container's frame count
    for o in (1, 2):
        assert sorted(p.name for p in (out / "walk" / str(o)).iterdir()) == [f"{i:05d}.png" for i in range(3)]
    before = files_under(out)
    rc, _, err = run_cli(argv, capsys)
    assert rc != 0 and "already exists" in err[-1]
    rc, _, err = run_cli(argv + ["--overwrite"], capsys)
    assert rc == 0, err
    assert files_under(out) == before  # replaced, no staging folder left behind
    assert not any(p.name.startswith(".uniref-partial") for p in out.iterdir())


def test_rvos_two_sentences_per_frame_ytvos_layout(clip, tiny_weights, cached_model, capsys):
    out = clip["dir"] / "out"
    rc, stdout, err = run_cli(["rvos", clip["frames"], "--text", "the yellow ellipse", "--text", "the blue ball",
                               "--mode", "per_frame", "--weights", tiny_weights, "--out", out, "--overlay",
                               "--format", "ytvos", "--format", "coco"], capsys)
    assert rc == 0, err
    names = [f"{i:05d}.png" for i in range(6)]
    for o in ("1", "2"):
        assert sorted(p.name for p in (out / "clip" / o).iterdir()) == names
        for n in names:
            assert set(np.unique(np.asarray(Image.open(out / "clip" / o / n))).tolist()) <= {0, 255}
    entries = json.loads((out / "clip.json").read_text())
    assert len(entries) == 12 and {e["text"] for e in entries} == {"the yellow ellipse", "the blue ball"}
    assert [e["obj_id"] for e in entries[:2]] == [1, 2]
    with av.open(str(out / "clip_overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6
    assert "objects [1, 2]" in stdout


def test_bundled_weights_make_weights_optional(tmp_path, tiny_weights, cached_model, monkeypatch, capsys):
    from uniref.inference import commands

    monkeypatch.setattr(commands, "bundled_weights", lambda name: tiny_weights if name == "demo" else None)
    image, _ = make_image()
    Image.fromarray(image).save(tmp_path / "cat.png")
    rc, stdout, err = run_cli(["ris", tmp_path / "cat.png", "--text", "the cat", "--config", "demo", "--out",
                               tmp_path / "out", "--format", "coco"], capsys)
    assert rc == 0, err
    assert cached_model == [("demo", tiny_weights, cached_model[0][2], "float32")]
    assert [p.name for p in files_under(tmp_path / "out")] == ["results.json"]


def test_installed_entry_point_bad_input_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [sys.executable, "-m", "uniref.cli", "ris", str(tmp_path / "missing.png"), "--text", "a dog", "--weights",
         str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"uniref ris: error: weights file not found: {tmp_path / 'w.safetensors'} (supply the r50 checkpoint there, "
        "or pass its path with --weights)"
    ]
    assert not (tmp_path / "out").exists()
