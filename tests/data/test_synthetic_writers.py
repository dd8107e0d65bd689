"""The synthetic world in the native layouts: byte-identical for a seed, read back by the benchmark readers with
the right counts, and scored by the evaluators (ground truth as prediction scores 100)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from uniref.data.datasets import build_dataset
from uniref.data.datasets.base import first_appearances
from uniref.data.synthetic import SHAPES, WorldConfig, generate_clip, generate_ris_image, write_world
from uniref.data.synthetic.writers import write_fss

SIZES = {"ris": {"train": 2, "val": 3, "testA": 1, "testB": 1}, "fss": {"val": 2}, "vos": {"train": 1, "val": 2},
         "rvos": {"train": 1, "valid": 2}}
CFG = WorldConfig(num_frames=6)


def _write(root: Path, seed: int):
    return write_world(root, seed, ris=SIZES["ris"], fss=SIZES["fss"], vos=SIZES["vos"], rvos=SIZES["rvos"],
                       config=CFG)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return root, _write(root / "a", 5)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(world, tmp_path):
    root, _ = world
    _write(tmp_path / "b", 5)
    _write(tmp_path / "c", 6)
    a, b, c = _digests(root / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert len(a) > 50 and a == b
    shared = set(a) & set(c)
    assert sum(a[k] != c[k] for k in shared) > 0.9 * len(shared)


def test_refer_layout_reads_back(world):
    _, layout = world
    refs = pickle.loads((layout.refer / "refcoco" / "refs(unc).p").read_bytes())
    assert isinstance(refs, list) and isinstance(refs[0], dict)
    for split, count in SIZES["ris"].items():
        reader = build_dataset("refcoco", layout.refer, split=split)
        items = [generate_ris_image(5, i, CFG, split) for i in range(count)]
        expected = [e.text for it in items for k in sorted(it.expressions) for e in it.expressions[k]]
        assert [s.expression for s in reader] == [t.lower() for t in expected]
    reader = build_dataset("refcoco", layout.refer, split="val")
    item = generate_ris_image(5, 0, CFG, "val")
    first_target = sorted(item.expressions)[0]
    np.testing.assert_array_equal(reader[0].load_mask(), item.masks[first_target])  # RLE is exact
    image = reader[0].load_image()
    assert image.shape == (CFG.height, CFG.width, 3)
    assert np.abs(image.astype(int) - item.image.astype(int)).mean() < 6  # JPEG, quality 95


def test_fss_layout_reads_back(world):
    _, layout = world
    reader = build_dataset("fss1000", layout.fss, split="val", shots=1)
    assert len(reader) == len(SHAPES) * SIZES["fss"]["val"]
    assert sorted({s.info["class_name"] for s in reader}) == sorted(f"val_{s}" for s in SHAPES)
    sample = reader[0]
    assert sample.load_mask().any() and sample.supports[0].load_mask().any()
    assert sample.supports[0].image_path != sample.image_path


def test_fss_needs_two_images_per_class(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        write_fss(tmp_path / "f", 0, {"val": 1})


def test_davis_layout_reads_back(world):
    _, layout = world
    reader = build_dataset("davis17", layout.davis, split="val")
    assert len(reader) == SIZES["vos"]["val"]
    assert len(build_dataset("davis17", layout.davis, split="train")) == SIZES["vos"]["train"]
    for index, sample in enumerate(reader):
        clip = generate_clip(5, index, CFG, "val")
        assert len(sample) == CFG.num_frames and len(sample.annotation_paths) == CFG.num_frames
        assert sorted(sample.first_masks) == [k for k in clip.object_ids if clip.first_frames[k] == 0]
        starts = first_appearances(sample.annotation_paths)
        assert {k: t for k, (t, _) in starts.items()} == clip.first_frames
        for t in range(CFG.num_frames):
            np.testing.assert_array_equal(sample.load_annotation(t), clip.labels[t])


def test_refytvos_layout_reads_back(world):
    _, layout = world
    reader = build_dataset("refytvos", layout.refytvos, split="valid")
    assert len(reader) == SIZES["rvos"]["valid"]
    for index, sample in enumerate(reader):
        clip = generate_clip(5, index, CFG, "valid", referring=True)
        expected = [(e.text, k) for k in sorted(clip.expressions) for e in clip.expressions[k]]
        assert [(e.text, e.obj_id) for e in sample.expressions] == expected
        np.testing.assert_array_equal(sample.load_annotation(2), clip.labels[2])
    assert len(build_dataset("refytvos", layout.refytvos, split="train")) == SIZES["rvos"]["train"]


def test_evaluators_score_ground_truth_as_perfect(world, tmp_path):
    from uniref.evaluation.davis import evaluate_folder
    from uniref.evaluation.ris import FSSEvaluator, RISEvaluator

    _, layout = world
    ris = RISEvaluator()
    for s in build_dataset("refcoco", layout.refer, split="val"):
        ris.process(s.load_mask(), s.load_mask(), entry_id=s.sample_id)
    assert ris.evaluate().oiou == pytest.approx(100.0)
    fss = FSSEvaluator()
    for s in build_dataset("fss1000", layout.fss, split="val"):
        fss.process(s.load_mask(), s.load_mask(), s.info["class_name"], entry_id=s.sample_id)
    assert fss.evaluate().miou == pytest.approx(100.0)
    reader = build_dataset("davis17", layout.davis, split="val")
    result = evaluate_folder(reader.annotations_dir, reader.annotations_dir, sequences=list(reader.names),
                             protocol="first_appearance")
    assert result.global_table()["J&F-Mean"] == pytest.approx(100.0)
    assert len(result.objects) == sum(len(generate_clip(5, i, CFG, "val").object_ids) for i in range(2))


def test_existing_folder_is_not_overwritten_silently(world):
    root, _ = world
    with pytest.raises(FileExistsError, match="overwrite"):
        _write(root / "a", 5)
