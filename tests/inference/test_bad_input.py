"""Bad input, one test each: a clear error, the CLI exits non-zero with exactly one line on stderr, and no
output file is left behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from inference_fixtures import (  # noqa: F401  (fixtures)
    cached_model,
    files_under,
    make_image,
    make_video,
    run_cli,
    tiny_random_model,
    tiny_weights,
)
from uniref.inference.image_predictor import ImagePredictor
from uniref.inference.video_predictor import VideoPredictor
from uniref.io.masks import MaskError, MaskSizeError, save_binary_png, save_label_png
from uniref.io.video import write_video


@pytest.fixture
def inputs(tmp_path):
    """Frames folder, first-frame palette PNG, an image with its mask, and a clean output path."""
    frames, labels = make_video(t=4)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    save_label_png(tmp_path / "first.png", labels[0])
    image, mask = make_image()
    Image.fromarray(image).save(tmp_path / "img.png")
    save_binary_png(tmp_path / "img_mask.png", mask)
    return {"dir": tmp_path, "frames": folder, "first": tmp_path / "first.png", "image": tmp_path / "img.png",
            "mask": tmp_path / "img_mask.png", "out": tmp_path / "out", "labels": labels, "video": frames}


def _fails_cleanly(argv, capsys, out, match: str) -> str:
    rc, stdout, err = run_cli(argv, capsys)
    assert rc != 0, stdout
    assert len(err) == 1, err
    assert err[0].startswith(f"uniref {argv[0]}: error: ") and match.lower() in err[0].lower(), err[0]
    assert files_under(out) == [], files_under(out)
    return err[0]


def test_missing_image(inputs, tiny_weights, capsys):
    missing = inputs["dir"] / "nope.jpg"
    line = _fails_cleanly(["ris", missing, "--text", "a dog", "--weights", tiny_weights, "--out", inputs["out"]],
                          capsys, inputs["out"], "not found")
    assert "nope.jpg" in line
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        ImagePredictor(tiny_random_model()).segment(missing, text="a dog")


def test_corrupt_image(inputs, tiny_weights, capsys):
    data = inputs["image"].read_bytes()
    bad = inputs["dir"] / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    garbage = inputs["dir"] / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    for path in (bad, garbage):
        line = _fails_cleanly(["fss", path, "--example", inputs["image"], inputs["mask"], "--weights", tiny_weights,
                               "--out", inputs["out"]], capsys, inputs["out"], path.name)
        assert "corrupt" in line or "not a readable image" in line


def test_truncated_video(inputs, tiny_weights, cached_model, capsys):
    noisy = [np.random.default_rng(i).integers(0, 256, (40, 56, 3), dtype=np.uint8) for i in range(12)]
    full = write_video(inputs["dir"] / "full.mp4", noisy, fps=10)
    cut = inputs["dir"] / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    line = _fails_cleanly(["vos", cut, "--masks", inputs["first"], "--weights", tiny_weights, "--out", inputs["out"],
                           "--overlay"], capsys, inputs["out"], "cut.mp4")
    assert "truncated" in line or "decod" in line
    assert cached_model, "the failure must come from decoding, after the run started"
    assert not inputs["out"].exists()  # the folder the run created is gone again


def test_frames_of_different_sizes(inputs, tiny_weights, capsys):
    Image.fromarray(np.zeros((30, 56, 3), np.uint8)).save(inputs["frames"] / "00002.png")
    line = _fails_cleanly(["vos", inputs["frames"], "--masks", inputs["first"], "--weights", tiny_weights,
                           "--out", inputs["out"]], capsys, inputs["out"], "00002.png")
    assert "30x56" in line and "40x56" in line
    frames = list(inputs["video"])
    frames[2] = frames[2][:30]
    predictor = VideoPredictor(tiny_random_model())
    state = predictor.init_state(frames)
    predictor.add_mask(state, 0, 1, inputs["labels"][0] == 1)
    with pytest.raises(ValueError, match="30x56"):
        list(predictor.propagate(state))


def test_mask_size_differs_from_frame(inputs, tiny_weights, capsys):
    small = inputs["dir"] / "small.png"
    save_label_png(small, inputs["labels"][0][:32, :48])
    line = _fails_cleanly(["vos", inputs["frames"], "--masks", small, "--weights", tiny_weights, "--out",
                           inputs["out"]], capsys, inputs["out"], "small.png")
    assert "32x48" in line and "40x56" in line
    predictor = VideoPredictor(tiny_random_model())
    with pytest.raises(ValueError, match="32x48"):
        predictor.step(inputs["video"][0], {1: inputs["labels"][0][:32, :48] == 1})


def test_empty_mask(inputs, tiny_weights, capsys):
    empty = inputs["dir"] / "empty.png"
    save_label_png(empty, np.zeros((40, 56), np.uint8))
    _fails_cleanly(["vos", inputs["frames"], "--masks", empty, "--weights", tiny_weights, "--out", inputs["out"]],
                   capsys, inputs["out"], "empty")
    blank = inputs["dir"] / "blank_mask.png"
    save_binary_png(blank, np.zeros((40, 56), bool))
    _fails_cleanly(["fss", inputs["image"], "--example", inputs["image"], blank, "--weights", tiny_weights,
                    "--out", inputs["out"]], capsys, inputs["out"], "empty")
    predictor = VideoPredictor(tiny_random_model())
    with pytest.raises(ValueError, match="empty"):
        predictor.step(inputs["video"][0], {1: np.zeros((40, 56), bool)})


def test_palette_ids_out_of_range(inputs, tiny_weights, capsys):
    ids = inputs["labels"][0].astype(np.uint16) * 150  # objects 150 and 300
    wide = inputs["dir"] / "wide.png"
    Image.fromarray(ids).save(wide)  # a 16-bit greyscale PNG
    line = _fails_cleanly(["vos", inputs["frames"], "--masks", wide, "--weights", tiny_weights, "--out",
                           inputs["out"]], capsys, inputs["out"], "out of range")
    assert "300" in line
    predictor = VideoPredictor(tiny_random_model())
    with pytest.raises(ValueError, match="1..255"):
        predictor.step(inputs["video"][0], {300: inputs["labels"][0] == 1})
    with pytest.raises(MaskError, match="out of range"):
        predictor.add_label_map(predictor.init_state(inputs["video"]), 0, ids.astype(np.int64))


@pytest.mark.parametrize("text", ["", "   \t", "?!."])
def test_empty_or_whitespace_text(inputs, tiny_weights, capsys, text):
    _fails_cleanly(["ris", inputs["image"], "--text", text, "--weights", tiny_weights, "--out", inputs["out"]],
                   capsys, inputs["out"], "text")
    _fails_cleanly(["rvos", inputs["frames"], "--text", "the dog", "--text", text, "--weights", tiny_weights,
                    "--out", inputs["out"]], capsys, inputs["out"], "--text #2")
    if text.strip() == "":
        with pytest.raises(ValueError, match="empty"):
            ImagePredictor(tiny_random_model()).segment(inputs["image"], text=text)


def test_text_over_77_tokens_is_truncated_with_a_warning(inputs, tiny_weights, cached_model, capsys):
    long_text = " ".join(["the small yellow ellipse on the left"] * 14)  # ~100 tokens
    rc, stdout, err = run_cli(["ris", inputs["image"], "--text", long_text, "--weights", tiny_weights, "--out",
                               inputs["out"]], capsys)
    assert rc == 0, err
    assert len(err) == 1 and err[0].startswith("uniref ris: warning: ") and "truncated to 77" in err[0], err
    assert (inputs["out"] / "img.png").is_file() and (inputs["out"] / "results.json").is_file()
    with pytest.warns(UserWarning, match="truncated to 77"):
        ImagePredictor(tiny_random_model()).segment(inputs["image"], text=long_text)


def test_fss_without_example(inputs, tiny_weights, capsys):
    _fails_cleanly(["fss", inputs["image"], "--weights", tiny_weights, "--out", inputs["out"]], capsys,
                   inputs["out"], "at least one --example")
    with pytest.raises(ValueError, match="at least one example"):
        ImagePredictor(tiny_random_model()).segment(inputs["image"], examples=[])


def test_example_mask_size_differs(inputs, tiny_weights, capsys):
    wrong = inputs["dir"] / "wrong_mask.png"
    save_binary_png(wrong, np.ones((20, 20), bool))
    line = _fails_cleanly(["fss", inputs["image"], "--example", inputs["image"], wrong, "--weights", tiny_weights,
                           "--out", inputs["out"]], capsys, inputs["out"], "wrong_mask.png")
    assert "20x20" in line and "40x56" in line
    with pytest.raises(MaskSizeError, match="20x20"):
        ImagePredictor(tiny_random_model()).segment(inputs["image"], examples=[(inputs["image"], np.ones((20, 20)))])


def test_output_folder_cannot_be_written(inputs, tiny_weights, capsys):
    afile = inputs["dir"] / "afile"
    afile.write_text("not a folder")
    out = afile / "sub"
    _fails_cleanly(["ris", inputs["image"], "--text", "a dog", "--weights", tiny_weights, "--out", out], capsys,
                   out, "afile")
    assert afile.read_text() == "not a folder"
    _fails_cleanly(["vos", inputs["frames"], "--masks", inputs["first"], "--weights", tiny_weights, "--out", afile],
                   capsys, out, "afile")


def test_existing_output_without_overwrite(inputs, tiny_weights, capsys):
    out = inputs["out"]
    out.mkdir()
    (out / "img.png").write_bytes(b"keep me")
    rc, _, err = run_cli(["ris", inputs["image"], "--text", "a dog", "--weights", tiny_weights, "--out", out], capsys)
    assert rc != 0 and len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0], err
    assert files_under(out) == [out / "img.png"] and (out / "img.png").read_bytes() == b"keep me"
    (out / "clip").mkdir()
    rc, _, err = run_cli(["vos", inputs["frames"], "--masks", inputs["first"], "--weights", tiny_weights, "--out",
                          out], capsys)
    assert rc != 0 and len(err) == 1 and "clip" in err[0] and "already exists" in err[0], err
    assert files_under(out) == [out / "img.png"]


def test_missing_weights_names_the_file(inputs, capsys):
    missing = inputs["dir"] / "r50.safetensors"
    line = _fails_cleanly(["ris", inputs["image"], "--text", "a dog", "--weights", missing, "--out", inputs["out"]],
                          capsys, inputs["out"], "weights file not found")
    assert str(missing) in line
    line = _fails_cleanly(["ris", inputs["image"], "--text", "a dog", "--out", inputs["out"]], capsys,
                          inputs["out"], "--weights")
    assert "r50" in line


def test_masks_for_frames_the_video_does_not_have(inputs, tiny_weights, capsys):
    masks = inputs["dir"] / "masks"
    masks.mkdir()
    save_label_png(masks / "00000.png", inputs["labels"][0])
    save_label_png(masks / "00009.png", inputs["labels"][0])
    _fails_cleanly(["vos", inputs["frames"], "--masks", masks, "--weights", tiny_weights, "--out", inputs["out"]],
                   capsys, inputs["out"], "00009.png")


def test_missing_required_prompt_is_one_line(inputs, tiny_weights, capsys):
    _fails_cleanly(["vos", inputs["frames"], "--weights", tiny_weights, "--out", inputs["out"]], capsys,
                   inputs["out"], "--masks is required")
    _fails_cleanly(["rvos", inputs["frames"], "--weights", tiny_weights, "--out", inputs["out"]], capsys,
                   inputs["out"], "--text is required")
    _fails_cleanly(["ris", inputs["image"], "--weights", tiny_weights, "--out", inputs["out"]], capsys,
                   inputs["out"], "--text is required")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_unavailable_device(inputs, tiny_weights, capsys):
    _fails_cleanly(["ris", inputs["image"], "--text", "a dog", "--weights", tiny_weights, "--out", inputs["out"],
                    "--device", "cuda"], capsys, inputs["out"], "CUDA is not available")
