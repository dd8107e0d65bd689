"""The bundled demo model on a reduced held-out world: the masks the demo writes score well above chance.

The masks are read back from the files ``uniref demo`` writes and scored here against the world's ground
truth (not taken from the demo's own table). Each task is compared with a chance baseline computed from the
same ground truth, so the bar moves with the data rather than with a number fitted to one run:

- RIS: pick one of the image's objects at random (the expected oIoU of that guess);
- FSS: mark the whole query image as the class;
- VOS: copy each object's given mask to every later frame (a model that has learned nothing about motion);
- RVOS: mark the whole frame. (Not a random object of the clip: the bundled model picks the right object
  only a little more often than that guess, since many of the world's RVOS sentences tell objects apart by
  a motion that one frame cannot show; README, "The demo".)
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch

from uniref.data.datasets import build_dataset
from uniref.data.datasets.base import CocoMask
from uniref.demo.pipeline import DemoSizes, run_demo
from uniref.demo.weights import DEMO_WEIGHTS
from uniref.io.masks import load_binary_mask, load_label_map

SIZES = DemoSizes(ris_images=12, fss_per_class=2, vos_clips=2, rvos_clips=2, overlays=1)
# how far above each baseline the model must be: twice the guess for the image tasks and for RVOS; for VOS
# a margin in J points over copying the masks forward, on the objects that move (copying gives them a J
# under MOVING_J)
RIS_FACTOR, FSS_FACTOR, RVOS_FACTOR = 2.0, 2.0, 2.0
VOS_MARGIN, MOVING_J = 20.0, 50.0


def _iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    return float(np.logical_and(pred, gt).sum()), float(np.logical_or(pred, gt).sum())


def _mean_j(pairs) -> float:
    """Mean per-frame region similarity J (%) over the frames where the object is present or predicted."""
    scores = [i / u for i, u in (_iou(p, g) for p, g in pairs) if u > 0]
    return 100 * float(np.mean(scores)) if scores else 0.0


def _ground_truth(sample) -> tuple[list[np.ndarray], list[int]]:
    """A clip's label maps and the ids of the objects in them."""
    labels = [sample.load_annotation(t) for t in range(len(sample))]
    return labels, sorted(set(np.unique(np.stack(labels)).tolist()) - {0})


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    assert DEMO_WEIGHTS.is_file(), f"the bundled demo weights are missing: {DEMO_WEIGHTS}"
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo") / "out"
    report = run_demo(out, sizes=SIZES, log=None)
    return out, report


def test_ris_masks_on_disk_score_well_above_chance(demo_run):
    out, report = demo_run
    reader = build_dataset("refcoco", out / "world" / "refer", split="val")
    objects = defaultdict(list)
    for ann in json.loads(reader.instances_path.read_text())["annotations"]:
        objects[ann["image_id"]].append(ann["segmentation"])
    inter = union = chance_inter = chance_union = 0.0
    for s in reader:
        gt = s.load_mask()
        i, u = _iou(load_binary_mask(out / "ris" / "predictions" / f"{s.sample_id}.png"), gt)
        inter, union = inter + i, union + u
        guesses = [_iou(CocoMask(seg, s.height, s.width).load(), gt) for seg in objects[s.info["image_id"]]]
        assert len(guesses) >= 2, f"image {s.info['image_id']} has a single object: no referring to do"
        chance_inter += np.mean([g[0] for g in guesses])
        chance_union += np.mean([g[1] for g in guesses])
    oiou, chance = 100 * inter / union, 100 * chance_inter / chance_union
    assert oiou == pytest.approx(report.metrics["RIS"]["oIoU"], abs=1e-6)
    assert oiou > RIS_FACTOR * chance, f"RIS oIoU {oiou:.1f}, a random object {chance:.1f}"


def test_fss_masks_on_disk_score_well_above_chance(demo_run):
    out, _ = demo_run
    reader = build_dataset("fss1000", out / "world" / "fss1000", split="val", shots=1)
    ious, chance = [], []
    for s in reader:
        gt = s.load_mask()
        i, u = _iou(load_binary_mask(out / "fss" / "predictions" / f"{str(s.sample_id).replace('/', '_')}.png"), gt)
        ious.append(100 * i / max(u, 1.0))
        chance.append(100 * gt.mean())
    assert len(ious) == 12
    assert np.mean(ious) > FSS_FACTOR * np.mean(chance), \
        f"FSS mIoU {np.mean(ious):.1f}, the whole image {np.mean(chance):.1f}"


def test_vos_label_maps_on_disk_track_the_objects(demo_run):
    out, report = demo_run
    reader = build_dataset("davis17", out / "world" / "davis", split="val")
    js, static = [], []
    for sample in reader:
        gts, ids = _ground_truth(sample)
        preds = [load_label_map(out / "vos" / "predictions" / sample.name / f"{name}.png")
                 for name in sample.frame_names]
        for obj in ids:
            first = next(t for t, g in enumerate(gts) if (g == obj).any())
            later = range(first + 1, len(gts))  # the given frame is the input, not a result
            js.append(_mean_j([(preds[t] == obj, gts[t] == obj) for t in later]))
            static.append(_mean_j([(gts[first] == obj, gts[t] == obj) for t in later]))
    js, static = np.array(js), np.array(static)
    assert js.mean() > static.mean(), f"VOS J {js.mean():.1f}, the given masks copied forward {static.mean():.1f}"
    # an object that stays put is tracked by copying its mask; the ones that move are what tracking is about
    moving = static < MOVING_J
    assert moving.any(), "the reduced world has no moving object"
    assert js[moving].mean() > static[moving].mean() + VOS_MARGIN, \
        f"VOS J of the moving objects {js[moving].mean():.1f}, their masks copied forward {static[moving].mean():.1f}"
    assert report.metrics["VOS"]["J&F"] > static.mean()


def test_rvos_masks_on_disk_follow_the_sentences(demo_run):
    out, report = demo_run
    reader = build_dataset("refytvos", out / "world" / "refytvos", split="valid")
    js, whole_frame = [], []
    for sample in reader:
        labels, _ = _ground_truth(sample)
        everything = np.ones_like(labels[0], dtype=bool)
        for exp in sample.expressions:
            preds = [load_binary_mask(reader.prediction_path(out / "rvos" / "predictions", sample, t, exp.exp_id))
                     for t in range(len(sample))]
            js.append(_mean_j([(p, lab == exp.obj_id) for p, lab in zip(preds, labels)]))
            whole_frame.append(_mean_j([(everything, lab == exp.obj_id) for lab in labels]))
    assert len(js) >= 2
    j = float(np.mean(js))
    assert j > RVOS_FACTOR * np.mean(whole_frame), f"RVOS J {j:.1f}, the whole frame {np.mean(whole_frame):.1f}"
    assert report.metrics["RVOS"]["J&F"] > RVOS_FACTOR * np.mean(whole_frame)
