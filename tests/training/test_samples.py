"""Augmentations and per-task sample builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uniref.training.samples import (
    FSSBuilder,
    ImageEntry,
    RISBuilder,
    SampleError,
    VideoBuilder,
    VideoEntry,
    build_sample_builder,
    collate,
    has_ordinal_word,
)
from uniref.training.transforms import AugmentConfig, apply_plan, plan_clip, shortest_edge_size


def _image(h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def _left_object(h=60, w=80):
    m = np.zeros((1, h, w), dtype=bool)
    m[0, 20:40, 5:25] = True
    return m


def test_shortest_edge_size_matches_detectron2():
    assert shortest_edge_size(480, 640, 800, 1333) == (800, 1067)
    assert shortest_edge_size(480, 1600, 800, 1333) == (400, 1333)  # long side capped
    assert shortest_edge_size(640, 480, 320, 768) == (427, 320)


def test_crop_range_flip_and_sizes():
    cfg = AugmentConfig(short_sizes=(32, 48), max_size=100, flip_prob=0.5, crop_prob=1.0, crop_pre_sizes=(),
                        crop_range=(20, 40))
    rng = np.random.default_rng(0)
    flips = set()
    for _ in range(50):
        (plan,) = plan_clip(cfg, rng, [(60, 80)])
        y0, x0, ch, cw = plan.crop
        assert 20 <= ch <= 40 and 20 <= cw <= 40 and y0 + ch <= 60 and x0 + cw <= 80
        img, masks = apply_plan(_image(), _left_object(), plan, cfg)
        assert min(img.shape[:2]) == plan.short_size and masks.shape[1:] == img.shape[:2]
        flips.add(plan.flip)
    assert flips == {True, False}
    flat = AugmentConfig(short_sizes=(60,), max_size=80, flip_prob=1.0, crop_prob=0.0)
    (plan,) = plan_clip(flat, rng, [(60, 80)])
    img, masks = apply_plan(_image(), _left_object(), plan, flat)
    np.testing.assert_array_equal(img, _image()[:, ::-1])
    np.testing.assert_array_equal(masks, _left_object()[:, :, ::-1])


def test_ris_swaps_left_right_on_flip_and_skips_crops_for_ordinals():
    entry = ImageEntry("a", _image, _left_object, expressions=("The dog, on the LEFT!",))
    flip = RISBuilder([entry], AugmentConfig(short_sizes=(60,), max_size=80, flip_prob=1.0, crop_prob=0.0))
    sample = flip(0, np.random.default_rng(0))
    assert sample.expression == "the dog on the right"
    assert sample.masks[0, :, 55:].any() and not sample.masks[0, :, :25].any()
    assert has_ordinal_word("the second dog") and not has_ordinal_word("the seconds hand dog x")
    crop = AugmentConfig(short_sizes=(60,), max_size=80, flip_prob=0.0, crop_prob=1.0, crop_pre_sizes=(),
                         crop_range=(30, 30))
    ordinal = ImageEntry("b", _image, _left_object, expressions=("the first dog",))
    for seed in range(5):
        s = RISBuilder([ordinal], crop)(0, np.random.default_rng(seed))
        assert s.image.shape[:2] == (60, 80)  # never cropped
        plain = RISBuilder([ImageEntry("c", _image, _left_object, expressions=("a dog",))], crop)(
            0, np.random.default_rng(seed))
        assert plain.masks[0].any()  # crops keep the object (redrawn otherwise)


def test_fss_support_comes_from_the_same_class():
    entries = [ImageEntry(f"{c}{i}", lambda i=i: _image(seed=i), _left_object, category=c)
               for c in ("cat", "dog") for i in range(3)]
    builder = FSSBuilder(entries, AugmentConfig(short_sizes=(40,), max_size=80, crop_prob=0.0))
    for index in range(6):
        s = builder(index, np.random.default_rng(index))
        query, support = s.sample_id.split("|support=")
        assert query[:3] == support[:3] and query != support
        assert s.ref_image is not None and s.ref_mask.shape == s.ref_image.shape[:2]
    with pytest.raises(SampleError, match="no category"):
        FSSBuilder([ImageEntry("x", _image, _left_object)], AugmentConfig())


def _video(num_frames, present):
    """Object 1 visible in the frames of ``present``; object 2 in all."""
    def objects(i):
        out = {2: np.pad(np.ones((4, 4), bool), ((0, 26), (0, 36)))}
        if i in present:
            out[1] = np.pad(np.ones((5, 5), bool), ((10, 15), (10, 25)))
        return out
    return VideoEntry("v", num_frames, lambda i: _image(30, 40, seed=i), objects, {1: ("the left one",)})


def test_video_clips_pairs_within_range_with_a_shared_object():
    aug = AugmentConfig(short_sizes=(30,), max_size=40, crop_prob=0.0, flip_prob=0.0)
    vos = VideoBuilder([_video(40, set(range(40)))], aug, "vos", sampling_range=3)
    for seed in range(30):
        s = vos(0, np.random.default_rng(seed))
        obj, frames = s.sample_id.split("|")[1:]
        f0, f1 = map(int, frames.split("=")[1].split(","))
        assert 0 < f1 - f0 <= 3  # the earlier frame is the reference
        np.testing.assert_array_equal(s.ref_image, _image(30, 40, seed=f0))
        np.testing.assert_array_equal(s.image, _image(30, 40, seed=f1))
        assert s.masks.shape == (1, 30, 40) and s.masks.any() and s.ref_mask.any()
    rvos = VideoBuilder([_video(40, set(range(40)))], aug, "rvos")
    s = rvos(0, np.random.default_rng(0))
    assert "obj=1" in s.sample_id and s.expression == "the left one"  # only object 1 has an expression
    with pytest.raises(SampleError, match="no object with an expression"):
        VideoBuilder([_video(5, set())], aug, "rvos")(0, np.random.default_rng(0))


def test_static_images_become_two_frames_with_independent_crops():
    entry = ImageEntry("img", lambda: _image(100, 120), lambda: np.pad(np.ones((1, 60, 60), bool),
                                                                       ((0, 0), (20, 20), (30, 30))))
    aug = AugmentConfig(short_sizes=(64,), max_size=200, crop_prob=1.0, crop_pre_sizes=(), crop_range=(50, 90))
    builder = build_sample_builder("vos", [entry], aug)
    shapes = set()
    for seed in range(10):
        s = builder(0, np.random.default_rng(seed))
        assert "frames=0,0" in s.sample_id and s.masks.any() and s.ref_mask.any()
        shapes.add((s.image.shape, s.ref_image.shape, s.image.tobytes() == s.ref_image.tobytes()))
    assert any(not same for _, _, same in shapes)  # the two frames got different crops


def test_collate_tokenises_and_keeps_the_references(tmp_path):
    from training_fixtures import write_vocab
    from uniref.modeling.text.tokenizer import build_tokenizer

    tok = build_tokenizer(write_vocab(tmp_path))
    entry = ImageEntry("a", _image, _left_object, expressions=("the dog",))
    s = RISBuilder([entry], AugmentConfig(short_sizes=(60,), max_size=80, crop_prob=0.0))(0, np.random.default_rng(0))
    batch = collate([s, s], dataset="d", task="ris", tokenizer=tok)
    assert batch.input_ids.shape == (2, 77) and batch.ref_images is None
    assert batch.input_ids[0, :4].tolist() == [tok.cls_token_id, tok.vocab["the"], tok.vocab["dog"], tok.sep_token_id]
    assert batch.images[0].shape == (3, 60, 80) and batch.masks[0].dtype == torch.bool
    with pytest.raises(SampleError, match="no mask reference"):
        collate([s], dataset="d", task="fss")


def test_detection_labels_follow_their_instances_through_crops_and_batches():
    from uniref.training.samples import DetectionBuilder, SampleError, collate
    from uniref.training.step import make_targets

    image = np.zeros((64, 64, 3), np.uint8)
    masks = np.zeros((3, 64, 64), bool)
    masks[0, :8, :8] = masks[1, 28:36, 28:36] = masks[2, 56:, 56:] = True
    entry = ImageEntry("e", lambda: image, lambda: masks, load_labels=lambda: np.array([5, 7, 9]))
    # a crop that keeps only the centre square drops the corner instances and their labels
    cfg = AugmentConfig(short_sizes=(64,), max_size=64, flip_prob=0.0, crop_prob=1.0, crop_pre_sizes=(),
                        crop_range=(20, 20))
    seen = set()
    for seed in range(30):
        sample = DetectionBuilder([entry], cfg)(0, np.random.default_rng(seed))
        assert len(sample.labels) == len(sample.masks)
        seen.add(tuple(sample.labels.tolist()))
    assert (7,) in seen and all(set(s) <= {5, 7, 9} for s in seen)
    plain = DetectionBuilder([entry], AugmentConfig(short_sizes=(64,), max_size=64, crop_prob=0.0))
    batch = collate([plain(0, np.random.default_rng(0))] * 2, dataset="d", task="det")
    assert [t.tolist() for t in batch.labels] == [[5, 7, 9]] * 2
    targets = make_targets(batch.masks, (64, 64), batch.labels)
    assert targets[0].labels.tolist() == [5, 7, 9]
    assert make_targets(batch.masks, (64, 64))[0].labels.tolist() == [0, 0, 0]  # class-agnostic by default
    unlabelled = DetectionBuilder([ImageEntry("u", lambda: image, lambda: masks)], cfg)(0, np.random.default_rng(0))
    with pytest.raises(SampleError, match="some samples have class labels"):
        collate([plain(0, np.random.default_rng(0)), unlabelled], dataset="d", task="det")
    wrong = ImageEntry("w", lambda: image, lambda: masks, load_labels=lambda: np.array([1]))
    with pytest.raises(SampleError, match="1 labels for 3 masks"):
        DetectionBuilder([wrong], cfg)(0, np.random.default_rng(0))
