"""Tiny datasets in the benchmarks' native layouts and a tiny random-weight checkpoint for end-to-end
evaluation tests (32x48 images, at most 4 frames per video)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

H, W = 32, 48

# Test sizes of the checkpoint's config (stored in the file; the runner uses the stored config).
SMALL_SIZES = {"short": 64, "max_size": 96}


def save_jpg(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path, quality=95)
    return path


def save_label(path: Path, label: np.ndarray) -> Path:
    """Palette PNG whose indices are the object ids."""
    from uniref.io.palette import davis_palette_flat

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette(davis_palette_flat())
    image.save(path)
    return path


def save_grey(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)
    return path


def label_with(objects: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """`[H, W]` label map with object `id` filling the box (y0, x0, y1, x1)."""
    label = np.zeros((H, W), np.uint8)
    for obj, (y0, x0, y1, x1) in objects.items():
        label[y0:y1, x0:x1] = obj
    return label


def save_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_davis(base: Path, annotations: str = "Annotations", lengths: dict[str, int] | None = None) -> Path:
    """DAVIS/ with seqA (objects 1 and 2, void border on frame 0) and seqB (object 1)."""
    davis = base / "DAVIS"
    lengths = lengths or {"seqA": 4, "seqB": 3}
    for seq, length in lengths.items():
        for t in range(length):
            save_jpg(davis / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", seed=t + 10 * len(seq))
            objects = {1: (2, 2 + t, 12, 14 + t)}
            if seq == "seqA":
                objects[2] = (18, 28, 28, 40)
            label = label_with(objects)
            if seq == "seqA" and t == 0:
                label[0, :] = 255
            save_label(davis / annotations / "480p" / seq / f"{t:05d}.png", label)
    sets = davis / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("".join(f"{s}\n" for s in lengths))
    return davis


REFDAVIS_TEXTS = {
    "Davis17_annot1.txt": 'seqA 1 "a red car"\nseqA 2 "a man"\nseqB 1 "the dog"\n',
    "Davis17_annot1_full_video.txt": 'seqA 1 "red car driving"\nseqA 2 "a man walking"\nseqB 1 "dog running"\n',
    "Davis17_annot2.txt": 'seqA 1 "car"\nseqA 2 "person"\nseqB 1 "dog"\n',
    "Davis17_annot2_full_video.txt": 'seqA 1 "car moving"\nseqA 2 "man moving"\nseqB 1 "dog moving"\n',
}


def write_refdavis(base: Path) -> Path:
    root = base / "ref-davis"
    write_davis(root, annotations="Annotations_unsupervised", lengths={"seqA": 3, "seqB": 2})
    for name, text in REFDAVIS_TEXTS.items():
        (root / "davis_text_annotations").mkdir(parents=True, exist_ok=True)
        (root / "davis_text_annotations" / name).write_text(text)
    return root


def _polygon(y0: int, x0: int, y1: int, x1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_refcoco(base: Path) -> Path:
    """refer layout: refcoco/refs(unc).p + instances.json + COCO train2014 images; val has 3 entries,
    testA and testB one each."""
    root = base / "refer_data"
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    for image_id in (1, 2):
        save_jpg(image_dir / f"COCO_train2014_{image_id:012d}.jpg", seed=100 + image_id)
    instances = {
        "images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": H, "width": W} for i in (1, 2)],
        "annotations": [
            {"id": 10, "image_id": 1, "segmentation": _polygon(4, 4, 20, 24), "bbox": [4, 4, 20, 16], "category_id": 1},
            {"id": 11, "image_id": 2, "segmentation": _polygon(10, 20, 30, 44), "bbox": [20, 10, 24, 20],
             "category_id": 2},
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }

    def sentence(sent_id: int, text: str) -> dict:
        return {"sent_id": sent_id, "sent": text, "raw": text, "tokens": text.split()}

    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "val", "category_id": 1,
         "sentences": [sentence(100, "man on the left"), sentence(101, "left guy")]},
        {"ref_id": 1, "ann_id": 11, "image_id": 2, "split": "val", "category_id": 2,
         "sentences": [sentence(102, "the right thing")]},
        {"ref_id": 2, "ann_id": 11, "image_id": 2, "split": "testA", "category_id": 2,
         "sentences": [sentence(103, "bottom")]},
        {"ref_id": 3, "ann_id": 10, "image_id": 1, "split": "testB", "category_id": 1,
         "sentences": [sentence(104, "top left")]},
    ]
    save_json(root / "refcoco" / "instances.json", instances)
    with open(root / "refcoco" / "refs(unc).p", "wb") as handle:
        pickle.dump(refs, handle, protocol=2)
    return root


def write_fss(base: Path, classes: tuple[str, ...] = ("cat", "dog"), images: int = 3) -> Path:
    """FSS-1000: one folder per class with N.jpg / N.png, plus the val class list."""
    root = base / "fss"
    for c, name in enumerate(classes):
        for n in range(1, images + 1):
            save_jpg(root / name / f"{n}.jpg", seed=200 + 10 * c + n)
            mask = np.zeros((H, W), bool)
            mask[4 + n : 20 + n, 6 + 2 * c : 30 + 2 * c] = True
            save_grey(root / name / f"{n}.png", mask)
    (root / "val.txt").write_text("".join(f"{c}\n" for c in classes))
    return root


REFYT_FRAMES = ["00000", "00005", "00010"]


def write_refytvos(base: Path) -> Path:
    """Ref-YouTube-VOS valid with two videos; the expressions carry object ids and valid/Annotations
    holds label maps, so the same root also serves as --gt."""
    root = base / "ref-youtube-vos"
    videos = {
        "vid1": {"expressions": {"0": {"exp": "a cat", "obj_id": "1"}, "1": {"exp": "the dog", "obj_id": "2"}},
                 "frames": REFYT_FRAMES},
        "vid2": {"expressions": {"0": {"exp": "a car", "obj_id": "1"}}, "frames": REFYT_FRAMES[:2]},
    }
    save_json(root / "meta_expressions" / "valid" / "meta_expressions.json", {"videos": videos})
    save_json(root / "meta_expressions" / "test" / "meta_expressions.json", {"videos": {}})
    for v, (video, entry) in enumerate(videos.items()):
        for t, name in enumerate(entry["frames"]):
            save_jpg(root / "valid" / "JPEGImages" / video / f"{name}.jpg", seed=300 + 10 * v + t)
            save_label(root / "valid" / "Annotations" / video / f"{name}.png",
                       label_with({1: (2, 2 + t, 14, 20 + t), 2: (18, 26, 30, 44)}))
    return root


def write_ytvos(base: Path) -> Path:
    """YouTube-VOS 2018 valid: two videos, every 5th frame, object 2 of vidA starts at the second frame."""
    root = base / "ytvos"
    meta = {"videos": {
        "vidA": {"objects": {"1": {"category": "cat", "frames": ["00000", "00005", "00010"]},
                             "2": {"category": "dog", "frames": ["00005", "00010"]}}},
        "vidB": {"objects": {"1": {"category": "car", "frames": ["00005", "00010"]}}},
    }}
    save_json(root / "valid" / "meta.json", meta)
    for v, video in enumerate(("vidA", "vidB")):
        for t, name in enumerate(("00000", "00005", "00010")):
            save_jpg(root / "valid" / "JPEGImages" / video / f"{name}.jpg", seed=400 + 10 * v + t)
    save_label(root / "valid" / "Annotations" / "vidA" / "00000.png", label_with({1: (2, 2, 14, 20)}))
    save_label(root / "valid" / "Annotations" / "vidA" / "00005.png", label_with({2: (18, 26, 30, 44)}))
    save_label(root / "valid" / "Annotations" / "vidB" / "00005.png", label_with({1: (4, 4, 16, 24)}))
    return root


def write_lvos(base: Path) -> Path:
    """LVOS valid: frames named by number (every 5th), every frame annotated, object 2 starts late."""
    root = base / "LVOS"
    numbers = (1, 6, 11)
    videos = {"vidA": {"1": numbers[0], "2": numbers[1]}, "vidB": {"1": numbers[0]}}
    meta = {"videos": {video: {"objects": {obj: {"frame_range": {"start": f"{start:08d}", "end": f"{numbers[-1]:08d}"}}
                                           for obj, start in objects.items()}} for video, objects in videos.items()}}
    save_json(root / "valid" / "valid_meta.json", meta)
    for v, (video, objects) in enumerate(videos.items()):
        for t, n in enumerate(numbers):
            save_jpg(root / "valid" / "JPEGImages" / video / f"{n:08d}.jpg", seed=500 + 10 * v + t)
            boxes = {1: (2, 2 + t, 14, 20 + t), 2: (18, 26, 30, 44)}
            save_label(root / "valid" / "Annotations" / video / f"{n:08d}.png",
                       label_with({int(o): boxes[int(o)] for o, start in objects.items() if n >= start}))
    return root


def write_mose(base: Path) -> Path:
    """MOSE valid: every frame, the first frame's annotation only."""
    root = base / "MOSE"
    for v, video in enumerate(("a_video", "b_video")):
        for t in range(3):
            save_jpg(root / "valid" / "JPEGImages" / video / f"{t:05d}.jpg", seed=600 + 10 * v + t)
        save_label(root / "valid" / "Annotations" / video / "00000.png",
                   label_with({1: (2, 2, 14, 20), 2: (18, 26, 30, 44)}))
    return root


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of the `tiny` config (fixed seed), with the config stored in the file."""
    import torch

    from uniref.checkpoint import save_safetensors
    from uniref.configs import TestResize, get_config
    from uniref.modeling.uniref import UniRef

    size = TestResize(**SMALL_SIZES)
    # Still the `tiny` architecture family, made smaller still so that CPU end-to-end runs take seconds.
    cfg = get_config("tiny", ris_test_size=size, fss_test_size=size, video_test_size=size, dim_feedforward=128,
                     fusion_heads=2, fusion_head_dim=32, num_queries=5, enc_layers=1, dec_layers=2,
                     text={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "intermediate_size": 64})
    torch.manual_seed(0)
    model = UniRef(cfg).eval()
    with torch.no_grad():
        # Confident queries (sigmoid(3) > every score threshold) so that random masks propagate and the
        # metrics are not all zero.
        for name, parameter in model.named_parameters():
            if name.startswith("class_embed.") and name.endswith(".bias"):
                parameter.fill_(3.0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_safetensors(model.state_dict(), path, metadata={"uniref_config": json.dumps(cfg.to_dict())})
    return path


def copy_labels(src: Path, dst: Path, edit=None) -> None:
    """Copy an annotation folder of label maps as predictions (void 255 -> background), optionally
    edited by `edit(video, frame, labels) -> labels`."""
    from uniref.io.masks import read_png_indices, save_label_png

    for png in sorted(src.rglob("*.png")):
        labels = read_png_indices(png)
        labels[labels == 255] = 0
        if edit is not None:
            labels = edit(png.parent.name, png.stem, labels)
        save_label_png(dst / png.relative_to(src), labels)


@pytest.fixture
def ds() -> SimpleNamespace:
    return SimpleNamespace(davis=write_davis, refdavis=write_refdavis, refcoco=write_refcoco, fss=write_fss,
                           refytvos=write_refytvos, ytvos=write_ytvos, lvos=write_lvos, mose=write_mose,
                           label=save_label, label_with=label_with, jpg=save_jpg, json=save_json,
                           copy_labels=copy_labels, H=H, W=W)


def _run_cli(*argv: object) -> int:
    from uniref.cli import main

    return main([str(a) for a in argv])


@pytest.fixture
def cli():
    """`cli("eval", "davis17", "--data", root, ...)` runs the command line in this process; returns its exit code."""
    return _run_cli
