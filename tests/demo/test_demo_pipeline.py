"""``run_demo`` end to end on a reduced held-out world with random weights, and the ``uniref demo`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from uniref.data.synthetic import HELD_OUT_SEED, WorldConfig
from uniref.demo.pipeline import DEMO_SEED, DemoSizes, format_table, run_demo

SIZES = DemoSizes(ris_images=1, fss_per_class=2, vos_clips=1, rvos_clips=1, overlays=1)


def test_demo_runs_end_to_end_and_writes_its_files(random_demo, tmp_path):
    import torch

    torch.set_num_threads(1)  # small convolutions: a second thread mostly waits (restored by conftest)
    _, path, _ = random_demo
    lines: list[str] = []
    report = run_demo(tmp_path / "out", path, sizes=SIZES, config=WorldConfig(num_frames=5), log=lines.append)
    assert DEMO_SEED >= HELD_OUT_SEED
    assert set(report.metrics) == {"RIS", "FSS", "VOS", "RVOS"}
    for task, key in (("RIS", "oIoU"), ("FSS", "mIoU"), ("VOS", "J&F"), ("RVOS", "J&F")):
        value = report.metrics[task][key]
        assert 0.0 <= value <= 100.0 and report.metrics[task]["count"] >= 1
    assert report.metrics["FSS"]["count"] == 12  # six classes, two queries each
    out = tmp_path / "out"
    for pattern in ("ris/*.png", "fss/*.png", "vos/*.mp4", "vos/*.gif", "rvos/*.mp4", "rvos/*.gif",
                    "vos/predictions/*/*.png", "rvos/predictions/Annotations/*/*/*.png"):
        assert list(out.glob(pattern)), f"no {pattern} written"
    assert (out / "overview.png").is_file() and all(p.exists() for p in report.files)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["seed"] == DEMO_SEED
    assert saved["metrics"]["RIS"]["oIoU"] == pytest.approx(report.metrics["RIS"]["oIoU"])
    assert report.table in "\n".join(lines) and "RVOS" in report.table
    # VOS predictions are palette PNGs of the frame size
    from PIL import Image

    with Image.open(next(out.glob("vos/predictions/*/*.png"))) as im:
        assert im.mode == "P" and im.size == (128, 96)


def test_table_lists_every_task():
    table = format_table({"RIS": {"oIoU": 81.25, "mIoU": 80.0, "count": 10.0},
                          "VOS": {"J&F": 77.5, "J": 76.0, "F": 79.0, "count": 3.0}})
    rows = table.splitlines()
    assert rows[0].split()[:3] == ["task", "metric", "value"]
    assert "81.2" in rows[2] and "77.5" in rows[3] and rows[3].rstrip().endswith("3")


def test_cli_reports_missing_weights(tmp_path, capsys):
    from uniref.cli import main

    code = main(["demo", "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "none.safetensors"), "--quick"])
    assert code == 2
    err = capsys.readouterr().err
    assert "none.safetensors" in err and "uniref train" in err
    assert not np.any([p.suffix == ".png" for p in (tmp_path / "o").rglob("*")])


def test_demo_never_writes_into_a_folder_of_other_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        run_demo(out, tmp_path / "weights.safetensors", sizes=SIZES, log=None)
    assert [p.name for p in out.iterdir()] == ["thesis.txt"]
