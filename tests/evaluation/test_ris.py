import numpy as np
import pytest
import torch

from uniref.evaluation.ris import FSSEvaluator, RISEvaluator, intersection_union


def _mask(shape, *boxes):
    out = np.zeros(shape, bool)
    for y0, y1, x0, x1 in boxes:
        out[y0:y1, x0:x1] = True
    return out


def test_intersection_union_counts():
    pred = _mask((4, 4), (0, 2, 0, 2))  # 4 pixels
    gt = _mask((4, 4), (1, 3, 1, 3))  # 4 pixels, 1 shared
    assert intersection_union(pred, gt) == (1, 7, 16)
    assert intersection_union(torch.from_numpy(pred), gt) == (1, 7, 16)
    with pytest.raises(ValueError, match=r"4x4 .* 4x5"):
        intersection_union(pred, np.zeros((4, 5), bool))


def test_ris_metrics_by_hand():
    evaluator = RISEvaluator()
    # IoU 1/2 exactly: not counted at P@0.5 (strictly greater).
    assert evaluator.add_counts(1, 2, entry_id="a") == 0.5
    # IoU 9/10.
    evaluator.add_counts(9, 10, entry_id="b")
    # IoU 0: empty prediction, non-empty ground truth.
    evaluator.process(np.zeros((2, 2), bool), np.ones((2, 2), bool), entry_id="c")
    # Both empty: IoU 1 by our convention; adds nothing to oIoU.
    evaluator.process(np.zeros((3, 3), bool), np.zeros((3, 3), bool), entry_id="d")
    metrics = evaluator.evaluate()
    assert metrics.count == 4
    assert metrics.oiou == pytest.approx(100 * (1 + 9 + 0) / (2 + 10 + 4))
    assert metrics.miou == pytest.approx(100 * (0.5 + 0.9 + 0 + 1) / 4)
    assert metrics.precision[0.5] == pytest.approx(50.0)  # 0.9 and 1
    assert metrics.precision[0.9] == pytest.approx(25.0)  # only 1 > 0.9 (0.9 is not)
    table = metrics.to_dict()
    assert set(table) >= {"P@0.5", "P@0.9", "oIoU", "mIoU"}


def test_empty_iou_can_follow_pycocotools():
    evaluator = RISEvaluator(empty_iou=0.0)
    evaluator.process(np.zeros((3, 3), bool), np.zeros((3, 3), bool))
    assert evaluator.evaluate().miou == 0.0


def test_merge_matches_single_process_and_drops_repeats():
    rng = np.random.default_rng(0)
    pairs = [(rng.random((6, 6)) < 0.5, rng.random((6, 6)) < 0.5) for _ in range(10)]
    single = RISEvaluator()
    for i, (p, g) in enumerate(pairs):
        single.process(p, g, entry_id=i)
    first, second = RISEvaluator(), RISEvaluator()
    for i, (p, g) in enumerate(pairs):
        (first if i % 2 else second).process(p, g, entry_id=i)
    second.process(*pairs[1], entry_id=1)  # a distributed sampler's padding repeat
    merged = RISEvaluator()
    merged.merge(first.state(), second.state())
    assert len(merged) == 10
    assert merged.evaluate() == single.evaluate()
    with pytest.raises(ValueError, match="already processed"):
        single.process(*pairs[0], entry_id=0)


def test_nothing_to_evaluate():
    with pytest.raises(ValueError, match="no entries"):
        RISEvaluator().evaluate()


def test_fss_metrics_by_hand():
    evaluator = FSSEvaluator()
    # class "a": two queries of 10 pixels each
    evaluator.add_counts(intersection=2, union=4, pixels=10, class_id="a")  # fg IoU 0.5
    evaluator.add_counts(intersection=3, union=3, pixels=10, class_id="a")  # fg IoU 1
    # class "b": one query
    evaluator.add_counts(intersection=0, union=5, pixels=10, class_id="b")  # fg IoU 0
    metrics = evaluator.evaluate()
    assert metrics.miou == pytest.approx(100 * (0.5 + 1 + 0) / 3)
    class_a, class_b = 5 / 7, 0.0
    assert metrics.per_class == pytest.approx({"a": 100 * class_a, "b": 100 * class_b})
    assert metrics.class_miou == pytest.approx(100 * (class_a + class_b) / 2)
    fg = (2 + 3 + 0) / (4 + 3 + 5)
    # background: both-background = pixels - union; background union = pixels - intersection
    bg = ((10 - 4) + (10 - 3) + (10 - 5)) / ((10 - 2) + (10 - 3) + (10 - 0))
    assert metrics.fb_iou == pytest.approx(100 * (fg + bg) / 2)
    assert metrics.num_classes == 2 and metrics.count == 3


def test_fss_process_from_masks_and_merge():
    pred = _mask((4, 4), (0, 2, 0, 4))
    gt = _mask((4, 4), (0, 1, 0, 4))
    a, b = FSSEvaluator(), FSSEvaluator()
    assert a.process(pred, gt, class_id=7, entry_id="q1") == pytest.approx(0.5)
    b.process(gt, gt, class_id=8, entry_id="q2")
    a.merge(b.state())
    metrics = a.evaluate()
    assert metrics.count == 2 and metrics.miou == pytest.approx(75.0)
    assert metrics.class_miou == pytest.approx(75.0)
