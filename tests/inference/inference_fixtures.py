"""Shared inputs of the inference tests: generated videos and images, tiny models and a tiny checkpoint.

Models are cached per process (building the tiny config costs seconds on 2 cores); predictors never change
a model, so sharing is safe. Test sizes are reduced (short side 48) so a frame costs a fraction of a second.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import uniref
from uniref.configs import TestResize

SMALL = TestResize(48, 96)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    c = rng.uniform(40, 200, (3, 3))
    return np.stack([c[k, 0] + c[k, 1] * xx * 0.8 - c[k, 2] * yy * 0.5 for k in range(3)], -1)


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_video(h: int = 40, w: int = 56, t: int = 6, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames ``[H, W, 3]`` uint8 and true label maps ``[H, W]`` uint8 of a generated video.

    Object 1 stays put; object 2 moves right and leaves the frame by frame 4; object 3 enters from the right
    at frame 2 and passes in front of object 1 (occlusion), so masks must be given at frames 0 and 2.
    """
    rng = np.random.default_rng(seed)
    bg = _background(h, w, rng)
    colours = {1: (220, 200, 60), 2: (40, 60, 210), 3: (40, 200, 60)}
    frames, labels = [], []
    for f in range(t):
        img = bg.copy()
        lab = np.zeros((h, w), np.uint8)
        objs = [
            (1, _ellipse(h, w, h * 0.35, w * 0.3, h * 0.22, w * 0.18)),
            (2, _ellipse(h, w, h * 0.7, w * 0.55 + f * w * 0.18, h * 0.18, w * 0.14)),
        ]
        if f >= 2:
            objs.append((3, _ellipse(h, w, h * 0.45, w * (0.9 - (f - 2) * 0.18), h * 0.2, w * 0.13)))
        for oid, m in objs:
            img[m] = colours[oid]
            lab[m] = oid
        img = img + rng.normal(0, 6, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(lab)
    return frames, labels


def first_appearances(labels: list[np.ndarray]) -> dict[int, dict[int, np.ndarray]]:
    """``{frame: {obj_id: mask}}`` with every object at the first frame it appears on."""
    out: dict[int, dict[int, np.ndarray]] = {}
    seen: set[int] = set()
    for f, lab in enumerate(labels):
        for o in (int(v) for v in np.unique(lab) if v):
            if o not in seen:
                seen.add(o)
                out.setdefault(f, {})[o] = lab == o
    return out


def make_image(h: int = 40, w: int = 56, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A natural-ish image with one ellipse object and its mask."""
    frames, labels = make_video(h, w, 1, seed)
    return frames[0], labels[0] == 1


@functools.lru_cache(maxsize=None)
def tiny_random_model(seed: int = 0):
    """The ``tiny`` config with random weights (seeded) and reduced test sizes."""
    torch.manual_seed(seed)
    return uniref.build_model("tiny", ris_test_size=SMALL, fss_test_size=SMALL, video_test_size=SMALL)


@functools.lru_cache(maxsize=None)
def _official_tiny():
    from full_reference import build_for_run, load_run
    from reference_data import reference_dir

    path = reference_dir() / "full-tiny-public.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} absent: the official tiny weights give the non-trivial masks these tests need")
    model = build_for_run(load_run(path))
    model.config = model.config.replace(ris_test_size=SMALL, fss_test_size=SMALL, video_test_size=SMALL)
    return model


def official_tiny_model():
    """The official-weights tiny model of the reference data (its masks are non-empty on natural-ish images);
    skips the test when the reference data is absent."""
    from reference_data import reference_dir

    reference_dir()  # skips with a reason when absent
    return _official_tiny()


def official_or_random_tiny_model():
    """The official-weights tiny model when the reference data is here, else the random tiny model."""
    try:
        return official_tiny_model()
    except pytest.skip.Exception:
        return tiny_random_model()


def save_tiny_checkpoint(path: Path) -> Path:
    """Save the random tiny model as our safetensors (config stored in the metadata) and return the path."""
    model = tiny_random_model()
    cfg = model.config
    uniref.checkpoint.save_safetensors(model.state_dict(), path, metadata={"uniref_config": json.dumps(cfg.to_dict())})
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny random checkpoint whose stored config has the reduced test sizes."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


# --------------------------------------------------------------------------- CLI helpers
def run_cli(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    """Run ``uniref <argv>`` in this process; returns (exit code, stdout, non-empty stderr lines)."""
    from uniref.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        rc = exit_.code
    captured = capsys.readouterr()
    return rc, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def files_under(path: Path) -> list[Path]:
    """Every file below ``path`` (hidden ones included); empty when ``path`` does not exist."""
    path = Path(path)
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


@pytest.fixture
def cached_model(monkeypatch):
    """Make the commands use the cached tiny random model instead of loading a checkpoint (saves seconds)."""
    from uniref.inference import commands

    calls = []

    def load(config, weights, device, dtype):
        calls.append((config, Path(weights), device, dtype))
        return tiny_random_model()

    monkeypatch.setattr(commands, "load_model", load)
    return calls
