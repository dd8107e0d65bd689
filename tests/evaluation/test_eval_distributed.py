"""A two-process `torchrun` evaluation writes the same predictions and the same table, byte for byte, as
one process (both with one thread per process, so the convolutions themselves are identical)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT_S = 600


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _run(prefix: list[str], bench: str, root: Path, weights: Path, out: Path, *extra: str) -> None:
    command = [*prefix, "-m", "uniref.cli", "eval", bench, "--data", str(root), "--weights", str(weights),
               "--config", "tiny", "--out", str(out), "--no-progress", *extra]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("bench", ["davis17", "refcoco"])
def test_two_processes_match_one(tmp_path: Path, ds, tiny_weights: Path, bench: str) -> None:
    if bench == "davis17":
        root, extra = ds.davis(tmp_path), ()
    else:
        root, extra = ds.refcoco(tmp_path), ("--split", "val")
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable], bench, root, tiny_weights, one, *extra)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], bench, root,
         tiny_weights, two, *extra)
    files_one, files_two = _files(one), _files(two)
    assert sorted(files_one) == sorted(files_two)
    assert "metrics.json" in files_one and "metrics.csv" in files_one
    for name in files_one:
        assert files_one[name] == files_two[name], name
