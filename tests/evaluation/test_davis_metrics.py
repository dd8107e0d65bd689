"""J/F metrics: hand-computed cases, protocol rules and error reporting."""

import json

import numpy as np
import pytest

from uniref.evaluation.davis import (
    VOSResult,
    boundary_f_measure,
    boundary_radius,
    db_statistics,
    evaluate_folder,
    evaluate_sequence,
    frame_scores,
    jaccard,
    mean_over_splits,
    merge_results,
    seg2bmap,
)
from uniref.io.masks import save_label_png


def _pixel(shape, y, x):
    out = np.zeros(shape, np.uint8)
    out[y, x] = 1
    return out


def test_seg2bmap_of_one_pixel_by_hand():
    # A lone pixel differs from the pixels west, north and north-west of it (they see it as their
    # east, south and south-east neighbour) and from its own neighbours.
    bmap = seg2bmap(_pixel((5, 5), 2, 2))
    assert sorted(zip(*np.nonzero(bmap))) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # The last row compares east only, the last column south only, the corner never.
    corner = seg2bmap(_pixel((3, 3), 2, 2))
    assert sorted(zip(*np.nonzero(corner))) == [(1, 1), (1, 2), (2, 1)]
    full = seg2bmap(np.ones((3, 4), np.uint8))
    assert not full.any()


def test_boundary_radius():
    assert boundary_radius(480, 854) == 8  # ceil(0.008 * 979.6)
    assert boundary_radius(5, 5) == 1
    assert boundary_radius(10, 10, bound_th=3) == 3


def test_one_pixel_objects_by_hand():
    gt = _pixel((5, 5), 2, 2)
    # Neighbouring pixel: no overlap (J = 0) but every boundary pixel is within 1 px (F = 1).
    assert jaccard(_pixel((5, 5), 2, 3), gt) == 0.0
    assert boundary_f_measure(_pixel((5, 5), 2, 3), gt) == pytest.approx(1.0)
    # Two pixels away: half of each boundary matches -> P = R = F = 1/2.
    assert boundary_f_measure(_pixel((5, 5), 2, 4), gt) == pytest.approx(0.5)
    assert jaccard(gt, gt) == 1.0 and boundary_f_measure(gt, gt) == 1.0


def test_empty_cases_by_hand():
    empty = np.zeros((6, 6), np.uint8)
    obj = np.zeros((6, 6), np.uint8)
    obj[1:4, 1:4] = 1
    assert jaccard(empty, empty) == 1.0 and boundary_f_measure(empty, empty) == 1.0
    assert jaccard(obj, empty) == 0.0 and boundary_f_measure(obj, empty) == 0.0  # P = 0, R = 1
    assert jaccard(empty, obj) == 0.0 and boundary_f_measure(empty, obj) == 0.0  # P = 1, R = 0
    # Void pixels are ignored: the prediction's extra pixels inside the void do not count.
    void = np.zeros((6, 6), np.uint8)
    void[1:4, 3] = 1
    assert jaccard(obj, np.where(void, 0, obj), void=void) == 1.0


def test_frame_scores_matches_single_object_functions():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 4, (20, 30)).astype(np.uint8)
    pred = rng.integers(0, 4, (20, 30)).astype(np.uint8)
    pairs = [(1, 1), (2, 3), (3, 0), (0, 2)]
    j, f = frame_scores(gt, pred, pairs)
    for row, (g, p) in enumerate(pairs):
        gm = gt == g if g else np.zeros_like(gt, bool)
        pm = pred == p if p else np.zeros_like(pred, bool)
        assert j[row] == jaccard(pm, gm)
        assert f[row] == boundary_f_measure(pm, gm)


def test_db_statistics_by_hand():
    mean, recall, decay = db_statistics(np.array([1.0, 1.0, 0.0, 0.0]))
    # bin edges: round(linspace(1, 4, 5)) - 1 = [0, 1, 2, 2, 3]; first bin [1, 1], last bin [0, 0]
    assert (mean, recall, decay) == (0.5, 0.5, 1.0)
    _, recall, _ = db_statistics(np.array([0.5, 0.51]))
    assert recall == 0.5  # strictly greater than 0.5
    assert all(np.isnan(v) for v in db_statistics(np.array([])))


def test_decay_bins_wrap_like_the_official_tool_beyond_256_frames():
    values = np.linspace(1, 0, 400)
    official = db_statistics(values)[2]
    correct = db_statistics(values, official_bins=False)[2]
    assert official != pytest.approx(correct)
    short = np.linspace(1, 0, 200)
    assert db_statistics(short)[2] == db_statistics(short, official_bins=False)[2]


def _square(shape, y, x, size, value=1, into=None):
    out = np.zeros(shape, np.uint8) if into is None else into
    out[y : y + size, x : x + size] = value
    return out


def test_object_absent_in_some_frames_counts_as_perfect_there():
    shape = (16, 16)
    gt = [_square(shape, 2, 2, 4), _square(shape, 3, 3, 4), np.zeros(shape, np.uint8), _square(shape, 4, 4, 4),
          _square(shape, 5, 5, 4)]
    pred = [g.copy() for g in gt]
    pred[3] = _square(shape, 4, 6, 4)  # half overlap in frame 3
    (obj,) = evaluate_sequence(gt, pred, name="s")
    assert obj.frames == ["00001", "00002", "00003"]  # first and last skipped
    assert obj.j.tolist() == [1.0, 1.0, pytest.approx(8 / 24)]
    assert obj.f[:2].tolist() == [1.0, 1.0]
    # The object is missing from the prediction while present in the ground truth: J = F = 0.
    pred[1] = np.zeros(shape, np.uint8)
    (obj,) = evaluate_sequence(gt, pred, name="s")
    assert obj.j[0] == 0.0 and obj.f[0] == 0.0


def test_protocols_differ_only_for_late_objects():
    shape = (16, 16)
    gt = [_square(shape, 1, 1, 4) for _ in range(6)]
    for t in (3, 4, 5):
        _square(shape, 8, 8, 3, value=2, into=gt[t])  # object 2 enters at frame 3
    pred = [g.copy() for g in gt]
    # DAVIS: the objects are those of the first frame; a predicted id beyond them is an error ...
    with pytest.raises(ValueError, match="00003 holds object id 2"):
        evaluate_sequence(gt, pred, protocol="davis2017")
    # ... and a later ground-truth object is not scored.
    davis = evaluate_sequence(gt, [np.where(p == 2, 0, p) for p in pred], protocol="davis2017")
    assert [o.object_id for o in davis] == [1] and davis[0].j.tolist() == [1.0] * 4
    late = evaluate_sequence(gt, pred, protocol="first_appearance")
    assert [o.object_id for o in late] == [1, 2]
    assert late[1].frames == ["00003", "00004"] and late[1].j.tolist() == [1.0, 1.0]


def test_unsupervised_matches_proposals_to_objects():
    shape = (20, 20)
    gt = [_square(shape, 2, 2, 5) for _ in range(3)]
    for g in gt:
        _square(shape, 10, 10, 6, value=2, into=g)
    # Proposal 2 is object 1, proposal 3 is object 2, proposal 1 is noise.
    pred = []
    for _ in range(3):
        p = _square(shape, 2, 2, 5, value=2)
        _square(shape, 10, 10, 6, value=3, into=p)
        p[0, 19] = 1
        pred.append(p)
    objects = evaluate_sequence(gt, pred, task="unsupervised")
    assert [(o.object_id, o.proposal_id) for o in objects] == [(1, 2), (2, 3)]
    assert all(o.j.tolist() == [1.0, 1.0, 1.0] for o in objects)


def _write_sequence(root, name, frames):
    for t, labels in enumerate(frames):
        save_label_png(root / name / f"{t:05d}.png", labels)


def test_folder_errors_name_the_file(tmp_path):
    shape = (12, 12)
    frames = [_square(shape, 1, 1, 4) for _ in range(4)]
    _write_sequence(tmp_path / "gt", "seq", frames)
    _write_sequence(tmp_path / "pred", "seq", frames)
    (tmp_path / "pred" / "seq" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"pred/seq/00002\.png"):
        evaluate_folder(tmp_path / "gt", tmp_path / "pred")
    save_label_png(tmp_path / "pred" / "seq" / "00002.png", np.zeros((12, 13), np.uint8))
    with pytest.raises(ValueError, match=r"00002\.png.*12x13.*12x12"):
        evaluate_folder(tmp_path / "gt", tmp_path / "pred")
    save_label_png(tmp_path / "pred" / "seq" / "00002.png", _square(shape, 1, 1, 4, value=3), overwrite=True)
    with pytest.raises(ValueError, match=r"00002\.png.*id 3"):
        evaluate_folder(tmp_path / "gt", tmp_path / "pred")
    with pytest.raises(FileNotFoundError, match="other"):
        evaluate_folder(tmp_path / "gt", tmp_path / "pred", sequences=["other"])
    (tmp_path / "pred" / "seq" / "00002.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"00002\.png"):
        evaluate_folder(tmp_path / "gt", tmp_path / "pred")


def test_too_many_proposals(tmp_path):
    shape = (8, 8)
    gt = [_square(shape, 1, 1, 3) for _ in range(2)]
    pred = [np.full(shape, 21, np.uint8) for _ in range(2)]
    with pytest.raises(ValueError, match="21 exceeds the 20 proposals"):
        evaluate_sequence(gt, pred, task="unsupervised")


def test_first_and_last_prediction_are_not_read(tmp_path):
    shape = (10, 10)
    frames = [_square(shape, 1, 1, 4) for _ in range(4)]
    _write_sequence(tmp_path / "gt", "seq", frames)
    _write_sequence(tmp_path / "pred", "seq", frames)
    (tmp_path / "pred" / "seq" / "00000.png").unlink()
    (tmp_path / "pred" / "seq" / "00003.png").unlink()
    result = evaluate_folder(tmp_path / "gt", tmp_path / "pred")
    assert result.global_table()["J&F-Mean"] == 100.0


def test_tables_merge_save_and_split_mean(tmp_path):
    shape = (12, 12)
    results = []
    for name, shift in (("a", 0), ("b", 2)):
        gt = [_square(shape, 2, 2, 5) for _ in range(4)]
        pred = [_square(shape, 2, 2 + shift, 5) for _ in range(4)]
        results.append(VOSResult(evaluate_sequence(gt, pred, name=name)))
    merged = merge_results(results[::-1])
    assert merged.sequences == ["a", "b"]
    table = merged.global_table()
    assert list(table) == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert table["J-Mean"] == pytest.approx((100 + 100 * 15 / 35) / 2)
    assert table["J&F-Mean"] == pytest.approx((table["J-Mean"] + table["F-Mean"]) / 2)
    rows = merged.object_table()
    assert [r["Sequence"] for r in rows] == ["a_1", "b_1"] and rows[0]["J-Mean"] == 100.0
    paths = merged.save(tmp_path / "out")
    assert json.loads(paths[0].read_text())["global"]["J-Mean"] == pytest.approx(table["J-Mean"])
    assert paths[1].read_text().startswith("J&F-Mean,")
    with pytest.raises(ValueError, match="more than one"):
        merge_results([results[0], results[0]])
    mean = mean_over_splits([results[0], results[1]])
    assert mean["J-Mean"] == pytest.approx(table["J-Mean"])


def test_processes_give_the_same_result(tmp_path):
    rng = np.random.default_rng(0)
    for s in range(3):
        frames = [(rng.random((16, 16)) < 0.3).astype(np.uint8) for _ in range(4)]
        _write_sequence(tmp_path / "gt", f"s{s}", frames)
        _write_sequence(tmp_path / "pred", f"s{s}", [np.roll(f, 1, axis=1) for f in frames])
    one = evaluate_folder(tmp_path / "gt", tmp_path / "pred", processes=1)
    two = evaluate_folder(tmp_path / "gt", tmp_path / "pred", processes=2)
    assert one.global_table() == two.global_table()
