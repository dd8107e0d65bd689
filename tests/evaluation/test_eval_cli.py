"""`uniref eval` end to end on tiny datasets in their native layouts, with random `tiny` weights:
predictions in each benchmark's layout, submission zips, and the printed / saved metrics equal to
metrics recomputed independently from the written predictions."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uniref.data.datasets import build_dataset
from uniref.evaluation.davis import evaluate_folder
from uniref.evaluation.ris import FSSEvaluator, RISEvaluator
from uniref.io.masks import read_png_indices
from uniref.io.rle import decode_rle

pytestmark = pytest.mark.slow


def _eval(cli, bench: str, root: Path, weights: Path, out: Path, *extra: object) -> None:
    rc = cli("eval", bench, "--data", root, "--weights", weights, "--config", "tiny", "--out", out, "--no-progress",
             *extra)
    assert rc == 0


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _csv_rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / "metrics.csv").read_text())))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _pred_mask(record: dict) -> np.ndarray:
    mask = decode_rle(record["segmentation"])
    return np.zeros_like(mask) if record["box_empty"] else mask


def test_davis17(tmp_path: Path, ds, tiny_weights: Path, cli, capsys) -> None:
    root = ds.davis(tmp_path)
    out = tmp_path / "out"
    _eval(cli, "davis17", root, tiny_weights, out)
    printed = capsys.readouterr().out
    for seq, length in (("seqA", 4), ("seqB", 3)):
        folder = out / "val" / seq
        assert sorted(p.name for p in folder.iterdir()) == [f"{t:05d}.png" for t in range(length)]
        with Image.open(folder / "00000.png") as image:
            assert image.mode == "P"
        # the given first-frame masks come back unchanged on their frame (void excluded)
        gt = read_png_indices(root / "Annotations" / "480p" / seq / "00000.png")
        gt[gt == 255] = 0
        np.testing.assert_array_equal(read_png_indices(folder / "00000.png"), gt)
    row = _metrics(out)["rows"][0]
    expected = evaluate_folder(root / "Annotations" / "480p", out / "val", sequences=["seqA", "seqB"]).global_table()
    assert {k: row[k] for k in expected} == expected
    assert (row["split"], row["videos"], row["objects"]) == ("val", 2, 3)
    assert _csv_rows(out)[0]["split"] == "val"
    assert float(_csv_rows(out)[0]["J&F-Mean"]) == pytest.approx(expected["J&F-Mean"], abs=5e-4)
    assert "J&F-Mean" in printed and "val" in printed


def test_refcoco_every_split(tmp_path: Path, ds, tiny_weights: Path, cli) -> None:
    root = ds.refcoco(tmp_path)
    out = tmp_path / "out"
    _eval(cli, "refcoco", root, tiny_weights, out)
    rows = _metrics(out)["rows"]
    assert [r["split"] for r in rows] == ["val", "testA", "testB"]
    for row in rows:
        split = row["split"]
        records = _records(out / split / "predictions.jsonl")
        samples = list(build_dataset("refcoco", root, split=split))
        assert [r["id"] for r in records] == [s.sample_id for s in samples]
        assert not (out / split / "parts").exists()
        evaluator = RISEvaluator()
        for record, sample in zip(records, samples):
            assert (record["height"], record["width"]) == (ds.H, ds.W)
            assert record["expression"] == sample.expression
            evaluator.process(_pred_mask(record), sample.load_mask(), entry_id=record["id"])
        expected = evaluator.evaluate().to_dict()
        assert {k: row[k] for k in expected} == expected
        assert set(row) >= {"oIoU", "mIoU", "P@0.5", "P@0.9"}


def test_fss1000_both_shots(tmp_path: Path, ds, tiny_weights: Path, cli) -> None:
    root = ds.fss(tmp_path, images=6)
    out = tmp_path / "out"
    _eval(cli, "fss1000", root, tiny_weights, out, "--limit", "2")
    rows = _metrics(out)["rows"]
    assert [r["split"] for r in rows] == ["val-1shot", "val-5shot"]
    for row, shots in zip(rows, (1, 5)):
        records = _records(out / row["split"] / "predictions.jsonl")
        samples = list(build_dataset("fss1000", root, split="val", shots=shots))[:2]
        assert [len(r["supports"]) for r in records] == [shots, shots]
        evaluator = FSSEvaluator()
        for record, sample in zip(records, samples):
            evaluator.process(_pred_mask(record), sample.load_mask(), record["class"], entry_id=record["id"])
        expected = evaluator.evaluate().to_dict()
        assert row["count"] == 2 and row["classes"] == 1
        for key in ("mIoU", "class-mIoU", "FB-IoU"):
            assert row[key] == expected[key]


def test_refytvos_layout_zip_and_local_score(tmp_path: Path, ds, tiny_weights: Path, cli) -> None:
    root = ds.refytvos(tmp_path)
    out = tmp_path / "out"
    _eval(cli, "refytvos", root, tiny_weights, out, "--gt", root)
    frames = {"vid1": ["00000", "00005", "00010"], "vid2": ["00000", "00005"]}
    expressions = {"vid1": ["0", "1"], "vid2": ["0"]}
    names = [f"Annotations/{v}/{e}/{f}.png" for v in frames for e in expressions[v] for f in frames[v]]
    for name in names:
        with Image.open(out / "valid" / name) as image:
            assert image.mode == "L"
            assert set(np.unique(np.asarray(image)).tolist()) <= {0, 255}
    with zipfile.ZipFile(out / "refytvos-valid.zip") as archive:
        assert sorted(archive.namelist()) == sorted(names)
        assert archive.read(names[0]) == (out / "valid" / names[0]).read_bytes()
    row = _metrics(out)["rows"][0]
    assert (row["videos"], row["objects"]) == (2, 3)
    # J of every expression recomputed by hand: IoU of its binary PNGs with its object in the label maps
    objects = {"vid1": {"0": 1, "1": 2}, "vid2": {"0": 1}}
    means = []
    for video, exps in expressions.items():
        for exp in exps:
            values = []
            for frame in frames[video]:
                gt = read_png_indices(root / "valid" / "Annotations" / video / f"{frame}.png") == objects[video][exp]
                pred = np.asarray(Image.open(out / "valid" / "Annotations" / video / exp / f"{frame}.png")) > 0
                union = np.count_nonzero(gt | pred)
                values.append(1.0 if union == 0 else np.count_nonzero(gt & pred) / union)
            means.append(np.mean(values))
    assert row["J-Mean"] == pytest.approx(100 * np.mean(means), abs=1e-9)
    # `uniref score` of the same folder gives the same row
    assert cli("score", "refytvos", "--pred", out, "--data", root, "--gt", root, "--out", tmp_path / "s",
               "--no-progress") == 0
    assert _metrics(tmp_path / "s")["rows"] == _metrics(out)["rows"]


def test_refdavis_four_splits_averaged(tmp_path: Path, ds, tiny_weights: Path, cli) -> None:
    root = ds.refdavis(tmp_path)
    out = tmp_path / "out"
    _eval(cli, "refdavis", root, tiny_weights, out, "--limit", "1")
    data = _metrics(out)
    rows = data["rows"]
    assert [r["split"] for r in rows] == ["val-0", "val-1", "val-2", "val-3"]
    for k in range(4):
        assert sorted(p.name for p in (out / f"val-{k}" / "seqA").iterdir()) == ["00000.png", "00001.png", "00002.png"]
        assert not (out / f"val-{k}" / "seqB").exists()  # --limit 1
    for key, value in data["mean"].items():
        assert value == pytest.approx(np.mean([r[key] for r in rows]), abs=1e-12)
    assert _csv_rows(out)[-1]["split"] == "mean"


def test_ytvos_server_layout(tmp_path: Path, ds, tiny_weights: Path, cli, capsys) -> None:
    root = ds.ytvos(tmp_path)
    out = tmp_path / "out"
    _eval(cli, "ytvos18", root, tiny_weights, out)
    printed = capsys.readouterr().out
    # only the frames the server expects: vidB's object starts at 00005, so no 00000 for it
    expected = ["Annotations/vidA/00000.png", "Annotations/vidA/00005.png", "Annotations/vidA/00010.png",
                "Annotations/vidB/00005.png", "Annotations/vidB/00010.png"]
    written = sorted(p.relative_to(out / "valid").as_posix() for p in (out / "valid").rglob("*.png"))
    assert written == expected
    with zipfile.ZipFile(out / "ytvos18-valid.zip") as archive:
        assert sorted(archive.namelist()) == expected
    assert read_png_indices(out / "valid" / "Annotations" / "vidB" / "00005.png")[4:16, 4:24].min() == 1
    assert _metrics(out)["rows"] == [{"split": "valid", "videos": 2}]
    assert "ytvos18-valid.zip" in printed
    # without ground truth there is nothing to score
    assert cli("score", "ytvos18", "--pred", out, "--data", root, "--no-progress") == 2
    assert "not public" in capsys.readouterr().err


def test_lvos_scored_and_mose_zipped(tmp_path: Path, ds, tiny_weights: Path, cli) -> None:
    lvos = ds.lvos(tmp_path)
    _eval(cli, "lvos", lvos, tiny_weights, tmp_path / "lvos", "--limit", "1")
    row = _metrics(tmp_path / "lvos")["rows"][0]
    gt = lvos / "valid" / "Annotations"
    expected = evaluate_folder(gt, tmp_path / "lvos" / "valid", sequences=["vidA"], protocol="first_appearance")
    assert {k: row[k] for k in expected.global_table()} == expected.global_table()
    assert (row["videos"], row["objects"]) == (1, 2)

    mose = ds.mose(tmp_path)
    out = tmp_path / "mose"
    _eval(cli, "mose", mose, tiny_weights, out, "--limit", "1")
    names = [f"Annotations/a_video/{t:05d}.png" for t in range(3)]
    with zipfile.ZipFile(out / "mose-valid.zip") as archive:
        assert archive.namelist() == names
    assert _metrics(out)["rows"] == [{"split": "valid", "videos": 1}]
