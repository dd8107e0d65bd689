"""Fine-tuning data: COCO-style JSON with RLE masks and expressions, DAVIS-style folders; the benchmark readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from uniref.training.custom import coco_json_entries, davis_folder_entries
from uniref.training.sources import build_sources, dataset_entries
from uniref.training.stages import DatasetConfig, apply_overrides, get_stage


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


@pytest.fixture
def coco_dir(tmp_path):
    root = tmp_path / "coco_style"
    (root / "images").mkdir(parents=True)
    anns, images = [], []
    for i in range(3):
        Image.fromarray(np.full((40, 50, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg", "height": 40, "width": 50})
        a = np.zeros((40, 50), bool)
        a[5:15, 5:20] = True
        b = np.zeros((40, 50), bool)
        b[20:35, 25:45] = True
        anns.append({"id": 10 * i, "image_id": i, "category_id": 1, "segmentation": _rle(a),
                     "expressions": ["the left box", "small box"]})
        anns.append({"id": 10 * i + 1, "image_id": i, "category_id": 2, "segmentation": _rle(b),
                     "sentences": [{"sent": "the right box"}]})
        anns.append({"id": 10 * i + 2, "image_id": i, "category_id": 2, "segmentation": _rle(b), "iscrowd": 1})
    (root / "annotations.json").write_text(json.dumps({
        "images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return root


def test_coco_style_entries_per_task(coco_dir):
    ris = coco_json_entries(coco_dir, "ris")
    assert len(ris) == 6 and ris[0].expressions == ("the left box", "small box")
    assert ris[1].expressions == ("the right box",)
    m = ris[0].load_masks()
    assert m.shape == (1, 40, 50) and m.sum() == 150 and ris[0].load_image().shape == (40, 50, 3)
    det = coco_json_entries(coco_dir / "annotations.json", "det")  # the JSON itself, images/ beside it
    assert len(det) == 3 and det[0].load_masks().shape == (2, 40, 50)  # crowd annotation skipped
    fss = coco_json_entries(coco_dir, "fss")
    assert sorted({e.category for e in fss}) == ["a", "b"] and len(fss) == 6


def test_coco_style_errors(tmp_path, coco_dir):
    with pytest.raises(FileNotFoundError, match="dataset path does not exist"):
        coco_json_entries(tmp_path / "nope", "ris")
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "annotations.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        coco_json_entries(bad, "ris")
    (bad / "annotations.json").write_text(json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 5}]}))
    with pytest.raises(ValueError, match="points to image 5"):
        coco_json_entries(bad, "det")
    with pytest.raises(ValueError, match="supports tasks"):
        coco_json_entries(coco_dir, "segment")


@pytest.fixture
def davis_dir(tmp_path):
    root = tmp_path / "videos"
    for video in ("cars", "dogs"):
        (root / "JPEGImages" / video).mkdir(parents=True)
        (root / "Annotations" / video).mkdir(parents=True)
        for t in range(4):
            Image.fromarray(np.full((24, 32, 3), 10 * t, np.uint8)).save(root / "JPEGImages" / video / f"{t:05d}.jpg")
            if t == 3 and video == "dogs":
                continue  # a frame without annotation is not sampled
            ids = np.zeros((24, 32), np.uint8)
            ids[2:10, 2 + t:12 + t] = 1
            ids[14:22, 20:30] = 2
            png = Image.fromarray(ids, mode="L").convert("P")
            png.save(root / "Annotations" / video / f"{t:05d}.png")
    (root / "expressions.json").write_text(json.dumps({"cars": {"1": ["the moving car"], "2": "the parked car"}}))
    return root


def test_davis_style_folders(davis_dir):
    vos = davis_folder_entries(davis_dir, "vos")
    assert [v.sample_id for v in vos] == ["cars", "dogs"] and [v.num_frames for v in vos] == [4, 3]
    objects = vos[0].load_objects(1)
    assert sorted(objects) == [1, 2] and objects[1][2:10, 3:13].all() and vos[0].load_frame(2).shape == (24, 32, 3)
    rvos = davis_folder_entries(davis_dir, "rvos")
    assert [v.sample_id for v in rvos] == ["cars"]  # only videos with expressions
    assert rvos[0].expressions == {1: ("the moving car",), 2: ("the parked car",)}


def test_sources_open_custom_data_and_report_problems(coco_dir, davis_dir, tmp_path):
    stage = apply_overrides(get_stage("synthetic"), [])
    stage.datasets = [
        DatasetConfig("mine", "coco-json", "ris", str(coco_dir)),
        DatasetConfig("clips", "davis-folders", "vos", str(davis_dir)),
        DatasetConfig("static", "coco-json", "vos", str(coco_dir)),
    ]
    sources = build_sources(stage)
    assert [len(s) for s in sources] == [6, 2, 3]
    sample = sources[1].builder(0, np.random.default_rng(0))
    assert sample.ref_image is not None and sample.masks.shape[0] == 1
    with pytest.raises(ValueError, match="kind davis-folders cannot feed task 'ris'"):
        dataset_entries(DatasetConfig("x", "davis-folders", "ris", str(davis_dir)))
    with pytest.raises(ValueError, match="unknown kind 'imagenet'"):
        dataset_entries(DatasetConfig("x", "imagenet", "det", str(davis_dir)))
    with pytest.raises(ValueError, match="dataset x has no root"):
        dataset_entries(DatasetConfig("x", "coco-json", "det"))
    with pytest.raises(FileNotFoundError, match="dataset x: path does not exist"):
        dataset_entries(DatasetConfig("x", "refytvos", "rvos", "missing"), data_root=str(tmp_path))


def test_benchmark_reader_adapter_davis_layout(tmp_path, davis_dir):
    """The official layouts go through the evaluation readers (here DAVIS 2017 with a train split)."""
    root = tmp_path / "DAVIS"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("cars\n")
    for kind in ("JPEGImages", "Annotations"):
        (root / kind).mkdir()
        (root / kind / "480p").symlink_to(davis_dir / kind, target_is_directory=True)
    entries = dataset_entries(DatasetConfig("davis", "davis", "vos", str(root)))
    assert len(entries) == 1 and entries[0].sample_id == "cars" and entries[0].num_frames == 4
    assert sorted(entries[0].load_objects(0)) == [1, 2]
