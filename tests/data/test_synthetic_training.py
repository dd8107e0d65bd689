"""Training entries from the generator feed the engine's sample builders and collate into batches."""

from __future__ import annotations

import numpy as np
import pytest

from uniref.data.synthetic import SHAPES, WorldConfig, generate_ris_image
from uniref.data.synthetic.training import SyntheticTaskDataset, demo_augment, world_entries
from uniref.training.samples import ImageEntry, TrainSample, VideoEntry, build_sample_builder, collate

CFG = WorldConfig(num_frames=5)


@pytest.mark.parametrize("task", ["det", "ris", "fss", "vos", "rvos"])
def test_entries_build_samples(task):
    entries = world_entries(task, 6, seed=3, config=CFG)
    assert len(entries) == 6
    entry = entries[1]
    assert isinstance(entry, VideoEntry if task in ("vos", "rvos") else ImageEntry)
    builder = build_sample_builder(task, entries, demo_augment(CFG), sampling_range=3)
    sample = builder(1, np.random.default_rng(0))
    assert isinstance(sample, TrainSample)
    assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
    assert sample.masks.dtype == bool and sample.masks.shape[1:] == sample.image.shape[:2]
    assert sample.masks.reshape(len(sample.masks), -1).any(1).all()
    if task in ("ris", "rvos"):
        assert sample.expression
    if task in ("fss", "vos", "rvos"):
        assert sample.ref_image is not None and sample.ref_mask.any()


def test_entries_are_lazy_deterministic_and_match_the_generator():
    a, b = world_entries("ris", 4, seed=7, config=CFG), world_entries("ris", 4, seed=7, config=CFG)
    ea, eb = a[2], b[2]
    assert ea.sample_id == eb.sample_id and ea.expressions == eb.expressions
    np.testing.assert_array_equal(ea.load_image(), eb.load_image())
    item = generate_ris_image(7, 2, CFG)
    np.testing.assert_array_equal(ea.load_image(), item.image)
    k = int(ea.sample_id.rsplit("obj", 1)[1])
    np.testing.assert_array_equal(ea.load_masks()[0], item.masks[k])
    assert ea.expressions == tuple(e.text for e in item.expressions[k])
    with pytest.raises(IndexError):
        a[4]


def test_fss_entries_cycle_through_the_classes_and_video_entries_expose_objects():
    fss = world_entries("fss", 12, seed=1, config=CFG)
    assert [fss[i].category for i in range(12)] == list(SHAPES) * 2
    clip = world_entries("rvos", 2, seed=1, config=CFG)[0]
    objects = clip.load_objects(0)
    assert objects and all(m.dtype == bool and m.any() for m in objects.values())
    assert clip.expressions and set(clip.expressions) <= set(range(1, 10))
    assert clip.load_frame(0).shape == (CFG.height, CFG.width, 3)


def test_task_dataset_redraws_per_epoch_and_collates():
    from uniref.modeling.text.tokenizer import build_tokenizer

    try:
        tokenizer = build_tokenizer()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    ds = SyntheticTaskDataset("rvos", 4, seed=2, config=CFG)
    first, again = ds[0], ds[0]
    np.testing.assert_array_equal(first.image, again.image)
    ds.set_epoch(1)
    assert ds[0].sample_id != first.sample_id or ds[0].image.shape != first.image.shape or \
        not np.array_equal(ds[0].image, first.image)
    batch = collate([ds[0], ds[1]], dataset="world", task="rvos", tokenizer=tokenizer, context_length=32)
    assert batch.input_ids.shape == (2, 32) and len(batch.ref_images) == 2


def test_detection_entries_carry_appearance_classes():
    from uniref.data.synthetic.training import NUM_APPEARANCE_CLASSES, appearance_class

    assert NUM_APPEARANCE_CLASSES == 6 * 8 * 4
    entry = world_entries("det", 3, seed=5)[2]
    item = generate_ris_image(5, 2)
    visible = [i for i, m in enumerate(item.masks) if m.any()]
    expected = [appearance_class(item.scene.objects[i].appearance) for i in visible]
    assert entry.load_labels().tolist() == expected and len(expected) == len(entry.load_masks())
    assert all(0 <= c < NUM_APPEARANCE_CLASSES for c in expected)
    # distinct appearances get distinct classes
    classes = {appearance_class(o.appearance): (o.appearance.shape, o.appearance.colour, o.appearance.texture)
               for k in range(20) for o in generate_ris_image(5, k).scene.objects}
    assert len(set(classes.values())) == len(classes)
