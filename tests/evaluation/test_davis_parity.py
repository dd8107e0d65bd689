"""J, F and J&F against vos-benchmark (a test-only dependency) and against a brute-force Ref-DAVIS matcher.

vos-benchmark writes ``results.csv`` into the prediction folder, so it always runs on a temporary copy.
"""

import contextlib
import io
import shutil

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from uniref.evaluation.davis import boundary_f_measure, evaluate_folder, evaluate_sequence, jaccard
from uniref.io.masks import load_label_map, save_label_png

vos_benchmark = pytest.importorskip("vos_benchmark.benchmark", reason="vos-benchmark is a test-only dependency")

TOL = 1e-6


def _ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 < 1


def _make_set(root, rng, *, sequences, late_objects):
    """Small DAVIS-layout set: objects that move, vanish for a frame, one-pixel objects, missed and
    shifted predictions; with ``late_objects`` some objects enter after the first frame and the
    prediction has false-positive ids."""
    gt_root, pred_root = root / "gt", root / "pred"
    for s in range(sequences):
        height, width = int(rng.integers(24, 72)), int(rng.integers(24, 96))
        frames = int(rng.integers(3, 10))
        count = int(rng.integers(1, 5))
        start = [0 if (k == 0 or not late_objects) else int(rng.integers(0, frames)) for k in range(count)]
        centre = rng.uniform(0.2, 0.8, (count, 2)) * (height, width)
        speed = rng.normal(0, 2, (count, 2))
        radius = rng.uniform(0.0, 0.25, (count, 2)) * (height, width)
        for t in range(frames):
            gt = np.zeros((height, width), np.uint8)
            pred = np.zeros((height, width), np.uint8)
            for k in range(count):
                if t < start[k] or (t > 0 and rng.random() < 0.1):
                    continue  # not there yet, or hidden in this frame
                cy, cx = centre[k] + speed[k] * t
                gt[_ellipse(gt.shape, cy, cx, *radius[k])] = k + 1
                if rng.random() < 0.15:
                    gt[int(np.clip(cy, 0, height - 1)), int(np.clip(cx, 0, width - 1))] = k + 1  # one pixel
                if rng.random() < 0.1:
                    continue  # missed by the prediction
                dy, dx = rng.normal(0, 2, 2)
                pred[_ellipse(pred.shape, cy + dy, cx + dx, *(radius[k] * rng.uniform(0.8, 1.2, 2)))] = k + 1
            if late_objects and rng.random() < 0.3:
                pred[rng.random((height, width)) < 0.01] = count + 1  # an id the ground truth never has
            save_label_png(gt_root / f"seq{s}" / f"{t:05d}.png", gt)
            save_label_png(pred_root / f"seq{s}" / f"{t:05d}.png", gt if t == 0 else pred)
    return gt_root, pred_root


def _vos_benchmark(gt_root, pred_root, tmp_path):
    copy = tmp_path / "pred_copy"
    shutil.copytree(pred_root, copy)
    with contextlib.redirect_stdout(io.StringIO()):
        jf, j, f, objects = vos_benchmark.benchmark([str(gt_root)], [str(copy)], num_processes=1, verbose=False)
    return jf[0] / 100, j[0] / 100, f[0] / 100, objects[0]


def _compare(result, reference):
    jf, j, f, objects = reference
    ours = {(o.sequence, o.object_id): o for o in result.objects}
    theirs = {(seq, obj) for seq, (ious, _) in objects.items() for obj in ious}
    assert set(ours) == theirs
    for seq, (ious, boundary) in objects.items():
        for obj in ious:
            assert abs(ours[seq, obj].j.mean() - ious[obj] / 100) < TOL
            assert abs(ours[seq, obj].f.mean() - boundary[obj] / 100) < TOL
    table = result.global_table()
    assert abs(table["J-Mean"] / 100 - j) < TOL
    assert abs(table["F-Mean"] / 100 - f) < TOL
    assert abs(table["J&F-Mean"] / 100 - jf) < TOL


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_appearance_protocol_equals_vos_benchmark(tmp_path, seed):
    gt_root, pred_root = _make_set(tmp_path, np.random.default_rng(seed), sequences=4, late_objects=True)
    result = evaluate_folder(gt_root, pred_root, protocol="first_appearance")
    _compare(result, _vos_benchmark(gt_root, pred_root, tmp_path))


def test_davis2017_protocol_equals_vos_benchmark_when_objects_start_in_the_first_frame(tmp_path):
    rng = np.random.default_rng(5)
    gt_root, pred_root = _make_set(tmp_path, rng, sequences=5, late_objects=False)
    # Both rules agree when every object is visible in the ground truth of the first scored frame.
    for seq in sorted(p.name for p in gt_root.iterdir()):
        frames = sorted((gt_root / seq).glob("*.png"))
        first = load_label_map(frames[0])
        save_label_png(frames[1], np.where(load_label_map(frames[1]) > 0, load_label_map(frames[1]), first),
                       overwrite=True)
    result = evaluate_folder(gt_root, pred_root, protocol="davis2017")
    _compare(result, _vos_benchmark(gt_root, pred_root, tmp_path))


def _brute_force_unsupervised(gt, pred, void_id=255, max_proposals=20):
    """The official unsupervised rule, written plainly with the single-object measures."""
    void = [g == void_id for g in gt]
    gt = [np.where(v, 0, g) for g, v in zip(gt, void)]
    num_gt = int(gt[0].max())
    num_pred = max(int(p.max()) for p in pred)
    rows = max(num_pred, num_gt)
    j = np.zeros((rows, num_gt, len(gt)))
    f = np.zeros((rows, num_gt, len(gt)))
    for p in range(rows):
        for g in range(num_gt):
            for t in range(len(gt)):
                pm, gm = pred[t] == p + 1, gt[t] == g + 1
                j[p, g, t] = jaccard(pm, gm, void=void[t])
                f[p, g, t] = boundary_f_measure(pm, gm, void=void[t])
    rows_i, cols_i = linear_sum_assignment(-(j.mean(axis=2) + f.mean(axis=2)) / 2)
    return {int(g) + 1: (int(p) + 1, j[p, g], f[p, g]) for p, g in zip(rows_i, cols_i)}


@pytest.mark.parametrize("proposals", [1, 2, 5])
def test_unsupervised_equals_brute_force(proposals):
    rng = np.random.default_rng(proposals)
    shape = (30, 40)
    gt, pred = [], []
    for t in range(4):
        g = np.zeros(shape, np.uint8)
        g[_ellipse(shape, 10 + t, 12, 6, 8)] = 1
        g[_ellipse(shape, 20, 28 - t, 5, 7)] = 2
        g[_ellipse(shape, 5, 35, 3, 3)] = 3
        g[rng.random(shape) < 0.03] = 255  # void
        p = np.zeros(shape, np.uint8)
        for k in range(proposals):
            p[_ellipse(shape, rng.uniform(5, 25), rng.uniform(5, 35), 5, 6)] = k + 1
        gt.append(g)
        pred.append(p)
    expected = _brute_force_unsupervised(gt, pred)
    objects = evaluate_sequence(gt, pred, task="unsupervised")
    assert [o.object_id for o in objects] == sorted(expected)
    for obj in objects:
        proposal, j, f = expected[obj.object_id]
        assert obj.proposal_id == proposal
        np.testing.assert_allclose(obj.j, j, atol=1e-12)
        np.testing.assert_allclose(obj.f, f, atol=1e-12)
