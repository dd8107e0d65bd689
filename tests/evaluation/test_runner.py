"""The runner's pieces: benchmark units, resumable layouts, `uniref score` on hand-made predictions with
known J&F, and resuming an interrupted `uniref eval`."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from uniref.evaluation.benchmarks import BENCHMARKS, get_benchmark
from uniref.evaluation.layouts import EntryLog, finalize_entries, make_zip, read_entries, staged_folder
from uniref.evaluation.runner import evaluate
from uniref.io.masks import save_label_png

# --------------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------------


def test_every_benchmark_of_the_paper_is_registered() -> None:
    assert set(BENCHMARKS) == {"refcoco", "refcoco+", "refcocog", "fss1000", "davis17", "ytvos18", "ytvos19",
                               "refytvos", "refdavis", "lvos", "mose"}
    assert [u.name for u in get_benchmark("refcoco").units()] == ["val", "testA", "testB"]
    assert [u.name for u in get_benchmark("refcocog").units()] == ["val", "test"]
    assert [u.name for u in get_benchmark("fss1000").units()] == ["val-1shot", "val-5shot"]
    assert [dict(u.dataset_kwargs) for u in get_benchmark("fss1000").units(shots=5)] == [{"split": "val", "shots": 5}]
    assert [u.name for u in get_benchmark("refdavis").units()] == ["val-0", "val-1", "val-2", "val-3"]
    assert [dict(u.dataset_kwargs) for u in get_benchmark("refdavis").units("val-2")] == [
        {"split": "val", "annotation_set": 2}]
    with pytest.raises(ValueError, match="val-0 .. val-3"):
        get_benchmark("refdavis").units("val-4")
    with pytest.raises(ValueError, match="--shots"):
        get_benchmark("davis17").units(shots=1)
    assert not get_benchmark("ytvos19").scorable("valid", has_gt=False)
    assert get_benchmark("ytvos19").scorable("valid", has_gt=True)
    assert not get_benchmark("davis17").scorable("test-dev", has_gt=False)
    assert get_benchmark("davis17").zip_layout_for("test-dev") == "root"


# --------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------


def test_staged_folder_renames_only_when_complete(tmp_path: Path) -> None:
    final = tmp_path / "Annotations" / "vid"
    leftover = tmp_path / "Annotations" / ".vid.partial"
    leftover.mkdir(parents=True)
    (leftover / "junk.png").write_bytes(b"half")
    with pytest.raises(RuntimeError):
        with staged_folder(final) as staging:
            assert not (staging / "junk.png").exists()  # the leftover was cleared
            (staging / "00000.png").write_bytes(b"x")
            raise RuntimeError("killed")
    assert not final.exists() and not leftover.exists()
    with staged_folder(final) as staging:
        (staging / "00000.png").write_bytes(b"x")
        assert not final.exists()
    assert sorted(p.name for p in final.iterdir()) == ["00000.png"]
    assert [p.name for p in final.parent.iterdir()] == ["vid"]


def test_entry_log_drops_a_torn_line_and_merges_parts(tmp_path: Path) -> None:
    log = EntryLog(tmp_path, rank=0)
    log.append({"id": "b", "v": 1})
    log.close()
    with open(tmp_path / "parts" / "rank0.jsonl", "a") as handle:
        handle.write('{"id": "c", "v"')  # a run killed mid-line
    other = EntryLog(tmp_path, rank=1)
    other.append({"id": "a", "v": 2})
    other.close()
    assert EntryLog(tmp_path).done_ids() == {"a", "b"}
    log = EntryLog(tmp_path, rank=0)
    log.append({"id": "c", "v": 3})
    log.close()
    merged = finalize_entries(tmp_path, ["a", "b", "c"])
    assert [json.loads(line)["id"] for line in merged.read_text().splitlines()] == ["a", "b", "c"]
    assert not (tmp_path / "parts").exists()
    assert read_entries([merged])["c"]["v"] == 3


def test_zip_is_deterministic_and_skips_staging_folders(tmp_path: Path) -> None:
    unit = tmp_path / "valid"
    for video in ("b", "a"):
        save_label_png(unit / "Annotations" / video / "00000.png", np.eye(4, dtype=np.uint8))
    (unit / "Annotations" / ".c.partial").mkdir()
    save_label_png(unit / "Annotations" / ".c.partial" / "00000.png", np.eye(4, dtype=np.uint8))
    first = make_zip(unit, "server", "annotations", tmp_path / "one.zip")
    os.utime(unit / "Annotations" / "a" / "00000.png", (1, 1))
    second = make_zip(unit, "server", "annotations", tmp_path / "two.zip")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == ["Annotations/a/00000.png", "Annotations/b/00000.png"]
    root = make_zip(unit / "Annotations", "davis", "root", tmp_path / "root.zip")
    with zipfile.ZipFile(root) as archive:
        assert archive.namelist() == ["a/00000.png", "b/00000.png"]


# --------------------------------------------------------------------------------------------------
# `uniref score` on hand-made predictions
# --------------------------------------------------------------------------------------------------


def test_score_davis_known_jf(tmp_path: Path, ds, cli) -> None:
    root = ds.davis(tmp_path)
    gt = root / "Annotations" / "480p"
    perfect = tmp_path / "perfect"
    ds.copy_labels(gt, perfect)
    assert cli("score", "davis17", "--pred", perfect, "--data", root, "--no-progress") == 0
    row = json.loads((perfect / "metrics.json").read_text())["rows"][0]
    assert row["J&F-Mean"] == pytest.approx(100.0) and row["F-Mean"] == pytest.approx(100.0)
    assert row["J-Recall"] == pytest.approx(100.0) and row["J-Decay"] == pytest.approx(0.0)

    # object 2 of seqA lost after the first frame: its J and F are 0, the two others 100 -> 200/3
    def drop_two(seq: str, frame: str, labels: np.ndarray) -> np.ndarray:
        if seq == "seqA" and frame != "00000":
            labels[labels == 2] = 0
        return labels

    lost = tmp_path / "lost"
    ds.copy_labels(gt, lost, drop_two)
    assert cli("score", "davis17", "--pred", lost, "--data", root, "--out", tmp_path / "m", "--no-progress") == 0
    data = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert data["rows"][0]["J&F-Mean"] == pytest.approx(200 / 3)
    assert data["rows"][0]["J-Mean"] == pytest.approx(200 / 3)
    per_object = {o["Sequence"]: o["J&F-Mean"] for o in data["details"]["val"]["objects"]}
    assert per_object == pytest.approx({"seqA_1": 100.0, "seqA_2": 0.0, "seqB_1": 100.0})


def test_score_refdavis_matching_and_mean(tmp_path: Path, ds, cli) -> None:
    root = ds.refdavis(tmp_path)
    gt = root / "DAVIS" / "Annotations_unsupervised" / "480p"
    pred = tmp_path / "pred"
    ds.copy_labels(gt, pred / "val-0")  # perfect: 100
    ds.copy_labels(gt, pred / "val-1", lambda seq, f, lab: lab * 0 if seq == "seqB" else lab)  # seqB lost: 200/3
    swap = np.arange(256, dtype=np.uint8)
    swap[[1, 2]] = [2, 1]
    ds.copy_labels(gt, pred / "val-2", lambda seq, f, lab: swap[lab])  # ids swapped: matching recovers 100
    ds.copy_labels(gt, pred / "val-3", lambda seq, f, lab: lab * 0)  # nothing: 0
    assert cli("score", "refdavis", "--pred", pred, "--data", root, "--no-progress") == 0
    data = json.loads((pred / "metrics.json").read_text())
    assert [r["J&F-Mean"] for r in data["rows"]] == pytest.approx([100.0, 200 / 3, 100.0, 0.0])
    assert data["mean"]["J&F-Mean"] == pytest.approx((100 + 200 / 3 + 100) / 4)
    assert {o["Sequence"]: o["J&F-Mean"] for o in data["details"]["val-2"]["objects"]} == pytest.approx(
        {"seqA_1": 100.0, "seqA_2": 100.0, "seqB_1": 100.0})


# --------------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_skips_written_videos_and_redoes_partial_ones(tmp_path: Path, ds, tiny_weights: Path) -> None:
    root = ds.davis(tmp_path)
    out = tmp_path / "out"
    kwargs = dict(config="tiny", out=out, progress=False)
    first = evaluate("davis17", root, tiny_weights, **kwargs)
    assert (first.reports[0].predicted, first.reports[0].skipped) == (2, 0)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "val").rglob("*.png")}

    second = evaluate("davis17", root, tiny_weights, **kwargs)
    assert (second.reports[0].predicted, second.reports[0].skipped) == (0, 2)
    assert {p: p.stat().st_mtime_ns for p in (out / "val").rglob("*.png")} == stamps
    assert second.table.rows == first.table.rows

    # a run killed while writing seqB: only its hidden staging folder, half full, is on disk
    shutil.rmtree(out / "val" / "seqB")
    partial = out / "val" / ".seqB.partial"
    partial.mkdir()
    shutil.copy(out / "val" / "seqA" / "00000.png", partial / "00000.png")
    third = evaluate("davis17", root, tiny_weights, **kwargs)
    assert (third.reports[0].predicted, third.reports[0].skipped) == (1, 1)
    assert not partial.exists()
    assert sorted(p.name for p in (out / "val" / "seqB").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert third.table.rows == first.table.rows


@pytest.mark.slow
def test_resume_entries(tmp_path: Path, ds, tiny_weights: Path) -> None:
    root = ds.refcoco(tmp_path)
    out = tmp_path / "out"
    kwargs = dict(config="tiny", split="val", out=out, progress=False)
    first = evaluate("refcoco", root, tiny_weights, limit=2, **kwargs)
    assert (first.reports[0].predicted, first.reports[0].skipped) == (2, 0)
    lines = (out / "val" / "predictions.jsonl").read_text().splitlines()
    # an interrupted later run: one more entry half written in a part file
    (out / "val" / "parts").mkdir()
    (out / "val" / "parts" / "rank0.jsonl").write_text(lines[0][: len(lines[0]) // 2])
    second = evaluate("refcoco", root, tiny_weights, **kwargs)
    assert (second.reports[0].predicted, second.reports[0].skipped) == (1, 2)
    records = [json.loads(line) for line in (out / "val" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["0_100", "0_101", "1_102"]
    assert (out / "val" / "predictions.jsonl").read_text().splitlines()[:2] == lines
    assert second.table.rows[0]["count"] == 3
