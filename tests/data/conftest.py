"""Writers for tiny on-disk datasets in the benchmarks' native layouts (32x48 images)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

H, W = 32, 48


def _palette() -> list[int]:
    # DAVIS-like colours; only the indices matter to the readers.
    colours = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128]
    return colours + [(i * 37) % 256 for i in range(768 - len(colours))]


def save_jpg(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path, quality=95)
    return path


def save_label(path: Path, label: np.ndarray) -> Path:
    """Palette PNG whose indices are the object ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette(_palette())
    image.save(path)
    return path


def label_with(objects: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """`[H, W]` label map with object `id` filling the box (y0, x0, y1, x1)."""
    label = np.zeros((H, W), np.uint8)
    for obj, (y0, x0, y1, x1) in objects.items():
        label[y0:y1, x0:x1] = obj
    return label


def save_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_davis(base: Path, annotations: str = "Annotations") -> Path:
    """DAVIS/ with seqA (4 frames, objects 1 and 2 plus void), seqB (3 frames, object 1)."""
    davis = base / "DAVIS"
    videos = {"seqA": 4, "seqB": 3}
    for seq, length in videos.items():
        for t in range(length):
            save_jpg(davis / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", seed=t)
            objects = {1: (2, 2 + t, 10, 12 + t)}
            if seq == "seqA":
                objects[2] = (20, 30, 28, 40)
            label = label_with(objects)
            if seq == "seqA" and t == 0:
                label[0, :] = 255  # void border, not an object
            save_label(davis / annotations / "480p" / seq / f"{t:05d}.png", label)
    sets = davis / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("seqA\nseqB\n")
    (sets / "train.txt").write_text("seqB\n")
    (sets / "test-dev.txt").write_text("seqB\n")
    return davis


@pytest.fixture
def write() -> SimpleNamespace:
    return SimpleNamespace(jpg=save_jpg, label=save_label, label_with=label_with, json=save_json,
                           davis=write_davis, H=H, W=W)
