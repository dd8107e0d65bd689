from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from uniref.data.datasets import (
    InconsistentDataError,
    MissingDataError,
    RefCOCODataset,
    build_dataset,
    load_refs_pickle,
)


def _sentence(sent_id: int, text: str) -> dict:
    return {"sent_id": sent_id, "sent": text.lower(), "raw": text + ".", "tokens": text.lower().split()}


def _box_mask(y0: int, x0: int, y1: int, x1: int, h: int = 32, w: int = 48) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


@pytest.fixture
def refer_root(tmp_path: Path, write) -> Path:
    """refcoco (unc) + refcocog (umd, google) with polygon, uncompressed-RLE and compressed-RLE masks."""
    root = tmp_path / "refer_data"
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    for image_id in (1, 2):
        write.jpg(image_dir / f"COCO_train2014_{image_id:012d}.jpg", seed=image_id)
    uncompressed = _box_mask(2, 30, 10, 40)
    counts, value, run = [], 0, 0
    for pixel in uncompressed.flatten(order="F"):  # COCO RLE runs are column-major, start with zeros
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    compressed = mask_utils.encode(np.asfortranarray(_box_mask(20, 5, 30, 15)))
    compressed["counts"] = compressed["counts"].decode()
    instances = {
        "images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": 32, "width": 48} for i in (1, 2)],
        "annotations": [
            {"id": 10, "image_id": 1, "segmentation": [[4, 4, 20, 4, 20, 12, 4, 12]], "bbox": [4, 4, 16, 8],
             "category_id": 1},
            {"id": 11, "image_id": 1, "segmentation": {"size": [32, 48], "counts": counts}, "bbox": [30, 2, 10, 8],
             "category_id": 2},
            {"id": 12, "image_id": 2, "segmentation": compressed, "bbox": [5, 20, 10, 10], "category_id": 3},
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    }
    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "val", "category_id": 1,
         "sentences": [_sentence(100, "Man On Left"), _sentence(101, "the left guy")]},
        {"ref_id": 1, "ann_id": 11, "image_id": 1, "split": "val", "category_id": 2,
         "sentences": [_sentence(102, "right thing")]},
        {"ref_id": 2, "ann_id": 12, "image_id": 2, "split": "testA", "category_id": 3,
         "sentences": [_sentence(103, "bottom")]},
        {"ref_id": 3, "ann_id": 12, "image_id": 2, "split": "train", "category_id": 3,
         "sentences": [_sentence(104, "a"), _sentence(105, "b")]},
    ]
    for dataset, split_bys in (("refcoco", ("unc",)), ("refcocog", ("umd", "google"))):
        write.json(root / dataset / "instances.json", instances)
        for split_by in split_bys:
            with open(root / dataset / f"refs({split_by}).p", "wb") as handle:
                pickle.dump(refs, handle, protocol=2)
    return root


def test_val_entries_one_per_sentence(refer_root: Path) -> None:
    ds = RefCOCODataset(refer_root, "refcoco", "val")
    assert len(ds) == 3
    assert [s.sample_id for s in ds] == ["0_100", "0_101", "1_102"]
    assert [s.expression for s in ds] == ["man on left", "the left guy", "right thing"]
    first = ds[0]
    assert first.image_path == refer_root / "images/mscoco/images/train2014/COCO_train2014_000000000001.jpg"
    assert (first.height, first.width) == (32, 48)
    assert first.info["ref_id"] == 0 and first.info["ann_id"] == 10 and first.info["raw"] == "Man On Left."
    assert first.load_image().shape == (32, 48, 3)
    assert ds[-1].sample_id == "1_102"
    with pytest.raises(IndexError):
        ds[3]


def test_masks_polygon_and_rle(refer_root: Path) -> None:
    ds = RefCOCODataset(refer_root, "refcoco", "val")
    polygon = ds[0].load_mask()
    assert polygon.dtype == bool and polygon.shape == (32, 48)
    # The polygon covers the box x 4..20, y 4..12 (pycocotools includes the far edge).
    assert polygon[8, 12] and not polygon[20, 30]
    assert polygon[4:12, 4:20].all() and polygon.sum() <= 17 * 9
    np.testing.assert_array_equal(ds[2].load_mask(), _box_mask(2, 30, 10, 40).astype(bool))
    rle = ds[2].mask.rle()
    assert mask_utils.area(rle) == 80
    test_a = RefCOCODataset(refer_root, "refcoco", "testA")
    assert len(test_a) == 1
    np.testing.assert_array_equal(test_a[0].load_mask(), _box_mask(20, 5, 30, 15).astype(bool))


def test_other_splits_and_options(refer_root: Path) -> None:
    assert len(RefCOCODataset(refer_root, "refcoco", "train")) == 2
    assert len(build_dataset("refcocog", refer_root, split="testA")) == 1  # umd by default
    google = RefCOCODataset(refer_root, "refcocog", "val", split_by="google")
    assert google.refs_path.name == "refs(google).p"
    raw = RefCOCODataset(refer_root / "refcoco", "refcoco", "val", text_field="raw",
                         image_dir=refer_root / "images/mscoco/images/train2014")
    assert raw[0].expression == "Man On Left."
    assert RefCOCODataset(refer_root, "refcoco", "val").splits == ("val", "testA", "testB")


def test_unknown_split_lists_available(refer_root: Path) -> None:
    with pytest.raises(ValueError, match=r"testB.*\['testA', 'train', 'val'\]"):
        RefCOCODataset(refer_root, "refcoco", "testB")


def test_missing_files_name_the_path(refer_root: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="nowhere"):
        RefCOCODataset(tmp_path / "nowhere")
    with pytest.raises(MissingDataError, match=r"refs\(unc\)\.p"):
        RefCOCODataset(refer_root, "refcocog", split_by="unc")
    (refer_root / "refcoco" / "instances.json").unlink()
    with pytest.raises(MissingDataError, match="instances.json"):
        RefCOCODataset(refer_root, "refcoco")


def test_missing_image_folder(refer_root: Path) -> None:
    (refer_root / "images" / "mscoco" / "images" / "train2014").rename(refer_root / "elsewhere")
    with pytest.raises(MissingDataError, match="train2014"):
        RefCOCODataset(refer_root)


def test_dangling_annotation(refer_root: Path, write) -> None:
    instances_path = refer_root / "refcoco" / "instances.json"
    instances = json.loads(instances_path.read_text())
    instances["annotations"] = [a for a in instances["annotations"] if a["id"] != 11]
    write.json(instances_path, instances)
    with pytest.raises(InconsistentDataError, match="annotation 11"):
        RefCOCODataset(refer_root)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


def test_pickle_loader_refuses_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([_Evil()], protocol=2))
    with pytest.raises(InconsistentDataError, match="refusing"):
        load_refs_pickle(path)
    assert not (tmp_path / "pwned_by_pickle").exists()


def test_python2_pickle_strings(tmp_path: Path) -> None:
    # Hand-written protocol-2 pickle with Python-2 byte strings: [{'split': 'val', 'sent': <bytes>}]
    def short_binstring(raw: bytes) -> bytes:
        return b"U" + bytes([len(raw)]) + raw

    def py2_pickle(value: bytes) -> bytes:
        return (b"\x80\x02]}" + short_binstring(b"split") + short_binstring(b"val") + b"s"
                + short_binstring(b"sent") + short_binstring(value) + b"sa.")

    path = tmp_path / "refs.p"
    path.write_bytes(py2_pickle("caf\u00e9".encode("utf-8")))
    assert load_refs_pickle(path) == [{"split": "val", "sent": "caf\u00e9"}]
    path.write_bytes(py2_pickle("caf\u00e9".encode("latin-1")))  # not valid UTF-8
    assert load_refs_pickle(path) == [{"split": "val", "sent": "caf\u00e9"}]
