"""Bad input ends `uniref eval` / `uniref score` with exit code 2 and one line naming the file: a missing
split file, frames without the annotations the layout requires, ids of the annotations that the
predictions do not have, a prediction folder missing frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from uniref.data.datasets import build_dataset
from uniref.io.masks import save_binary_png
from uniref.io.rle import encode_rle


def _fails(cli, capsys, *argv: object) -> str:
    """Run the command line, expect exit code 2 and a one-line error; return that line."""
    assert cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith(f"uniref {argv[0]}: error: ")
    return err[-1]


# ------------------------------------------------------------------------------------------------ split files


def test_missing_davis_split_file(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.davis(tmp_path)
    (root / "ImageSets" / "2017" / "val.txt").unlink()
    ds.copy_labels(root / "Annotations" / "480p", tmp_path / "pred")
    line = _fails(cli, capsys, "score", "davis17", "--pred", tmp_path / "pred", "--data", root)
    assert str(root / "ImageSets" / "2017" / "val.txt") in line


def test_missing_fss_class_list(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.fss(tmp_path)
    (root / "val.txt").unlink()
    line = _fails(cli, capsys, "score", "fss1000", "--shots", "1", "--pred", tmp_path, "--data", root)
    assert str(root / "val.txt") in line  # the candidates are folded into the one line


def test_missing_refs_pickle(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.refcoco(tmp_path)
    (root / "refcoco" / "refs(unc).p").unlink()
    line = _fails(cli, capsys, "score", "refcoco", "--split", "val", "--pred", tmp_path, "--data", root)
    assert "refs(unc).p" in line


# ------------------------------------------------------------------------------------------------ annotations


@pytest.mark.slow
def test_eval_stops_before_the_model_runs_when_a_frame_has_no_annotation(tmp_path: Path, ds, tiny_weights: Path,
                                                                         cli, capsys) -> None:
    root = ds.davis(tmp_path)
    missing = root / "Annotations" / "480p" / "seqA" / "00002.png"
    missing.unlink()
    out = tmp_path / "out"
    line = _fails(cli, capsys, "eval", "davis17", "--data", root, "--weights", tiny_weights, "--config", "tiny",
                  "--out", out, "--no-progress")
    assert str(missing) in line
    assert not (out / "val" / "seqA").exists() and not (out / "val" / "seqB").exists()


def test_score_names_a_missing_ground_truth_frame(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.refytvos(tmp_path)
    pred = tmp_path / "pred" / "Annotations"
    layout = (("vid1", ("00000", "00005", "00010"), ("0", "1")), ("vid2", ("00000", "00005"), ("0",)))
    for video, frames, exps in layout:
        for exp in exps:
            for frame in frames:
                save_binary_png(pred / video / exp / f"{frame}.png", np.zeros((ds.H, ds.W), bool))
    missing = root / "valid" / "Annotations" / "vid2" / "00005.png"
    missing.unlink()
    line = _fails(cli, capsys, "score", "refytvos", "--pred", tmp_path / "pred", "--data", root, "--gt", root)
    assert str(missing) in line


# ------------------------------------------------------------------------------------------------ ids


def _ris_predictions(root: Path, folder: Path, skip: str | None = None) -> Path:
    path = folder / "val" / "predictions.jsonl"
    path.parent.mkdir(parents=True)
    lines = []
    for sample in build_dataset("refcoco", root, split="val"):
        if sample.sample_id != skip:
            lines.append(json.dumps({"id": sample.sample_id, "segmentation": encode_rle(sample.load_mask()),
                                     "box_empty": False}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ris_predictions_without_an_entry(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.refcoco(tmp_path)
    complete = _ris_predictions(root, tmp_path / "ok")
    assert cli("score", "refcoco", "--split", "val", "--pred", tmp_path / "ok", "--data", root) == 0
    row = json.loads((tmp_path / "ok" / "metrics.json").read_text())["rows"][0]
    assert row["oIoU"] == pytest.approx(100.0) and row["P@0.9"] == pytest.approx(100.0)
    assert complete.is_file()
    broken = _ris_predictions(root, tmp_path / "broken", skip="1_102")
    line = _fails(cli, capsys, "score", "refcoco", "--split", "val", "--pred", tmp_path / "broken", "--data", root)
    assert str(broken) in line and "'1_102'" in line


def test_refytvos_predictions_without_an_expression(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.refytvos(tmp_path)
    pred = tmp_path / "pred" / "Annotations"
    for frame in ("00000", "00005", "00010"):
        save_binary_png(pred / "vid1" / "0" / f"{frame}.png", np.zeros((ds.H, ds.W), bool))
    line = _fails(cli, capsys, "score", "refytvos", "--pred", tmp_path / "pred", "--data", root, "--gt", root)
    assert str(pred / "vid1" / "1") in line


def test_davis_predictions_without_a_video(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.davis(tmp_path)
    ds.copy_labels(root / "Annotations" / "480p" / "seqA", tmp_path / "pred" / "seqA")
    line = _fails(cli, capsys, "score", "davis17", "--pred", tmp_path / "pred", "--data", root)
    assert str(tmp_path / "pred" / "seqB") in line


def test_davis_prediction_with_an_id_the_annotations_do_not_have(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.davis(tmp_path)

    def add_object(video: str, frame: str, labels: np.ndarray) -> np.ndarray:
        if video == "seqB" and frame == "00001":
            labels[-3:, -3:] = 7
        return labels

    ds.copy_labels(root / "Annotations" / "480p", tmp_path / "pred", add_object)
    line = _fails(cli, capsys, "score", "davis17", "--pred", tmp_path / "pred", "--data", root)
    assert str(tmp_path / "pred" / "seqB" / "00001.png") in line and "7" in line


# ------------------------------------------------------------------------------------------------ frames


def test_davis_prediction_folder_missing_a_frame(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.davis(tmp_path)
    ds.copy_labels(root / "Annotations" / "480p", tmp_path / "pred")
    missing = tmp_path / "pred" / "seqA" / "00003.png"
    missing.unlink()
    line = _fails(cli, capsys, "score", "davis17", "--pred", tmp_path / "pred", "--data", root)
    assert str(missing) in line


def test_ytvos_gt_prediction_missing_a_server_frame(tmp_path: Path, ds, cli, capsys) -> None:
    root = ds.ytvos(tmp_path)
    gt = tmp_path / "gt"
    # a fully annotated copy of the valid split serves as ground truth
    shutil.copytree(root, gt)
    for video in ("vidA", "vidB"):
        for frame in ("00000", "00005", "00010"):
            ds.label(gt / "valid" / "Annotations" / video / f"{frame}.png", ds.label_with({1: (2, 2, 14, 20)}))
    ds.copy_labels(gt / "valid" / "Annotations", tmp_path / "pred" / "Annotations")
    (tmp_path / "pred" / "Annotations" / "vidB" / "00000.png").unlink()  # not a server frame: fine
    assert cli("score", "ytvos18", "--pred", tmp_path / "pred", "--data", root, "--gt", gt) == 0
    missing = tmp_path / "pred" / "Annotations" / "vidB" / "00010.png"
    missing.unlink()
    line = _fails(cli, capsys, "score", "ytvos18", "--pred", tmp_path / "pred", "--data", root, "--gt", gt)
    assert str(missing) in line
