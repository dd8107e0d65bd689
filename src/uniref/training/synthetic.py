"""A tiny generated dataset of coloured shapes for smoke runs, tests and benchmarks (``kind="synthetic"``).

Deterministic from ``(seed, index)``; nothing is stored on disk. Each image holds 1-3 rectangles or ellipses
of distinct colours on a noisy background; the referred object (RIS) is the first one, described as
"the <colour> <shape>"; FSS classes are the shapes; videos move the shapes linearly.
"""

from __future__ import annotations

import numpy as np

from uniref.training.samples import ImageEntry, VideoEntry

__all__ = ["synthetic_entries"]

_COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (230, 220, 40)}
_SHAPES = ("square", "circle")


def _shape_mask(shape: str, h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if shape == "square":
        return (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _layout(rng: np.random.Generator, size: int, num_objects: int) -> list[dict]:
    colours = rng.permutation(list(_COLOURS))[:num_objects]
    objects = []
    for colour in colours:
        r = rng.uniform(0.12, 0.25) * size
        objects.append({
            "colour": str(colour), "shape": _SHAPES[int(rng.integers(len(_SHAPES)))], "r": (r, r * rng.uniform(0.8, 1.2)),
            "c": (rng.uniform(r, size - r), rng.uniform(r, size - r)), "v": tuple(rng.uniform(-3, 3, 2)),
        })
    return objects


def _render(objects: list[dict], size: int, rng: np.random.Generator, t: int = 0) -> tuple[np.ndarray, np.ndarray]:
    image = np.clip(rng.normal(110, 25, (size, size, 3)), 0, 255)
    masks: list[np.ndarray] = []
    for obj in reversed(objects):  # the first (referred) object is drawn last, on top
        cy = float(np.clip(obj["c"][0] + t * obj["v"][0], obj["r"][0], size - obj["r"][0]))
        cx = float(np.clip(obj["c"][1] + t * obj["v"][1], obj["r"][1], size - obj["r"][1]))
        m = _shape_mask(obj["shape"], size, size, cy, cx, *obj["r"])
        for prev in masks:  # occlusion
            prev &= ~m
        masks.append(m)
        image[m] = _COLOURS[obj["colour"]]
    return image.astype(np.uint8), np.stack(masks[::-1])


def synthetic_entries(task: str, num: int, *, size: int = 64, seed: int = 0, num_frames: int = 6,
                      max_objects: int = 3) -> list:
    """``num`` generated entries for ``task`` (image entries for det/ris/fss, video entries for vos/rvos) with
    1 to ``max_objects`` objects each (FSS: one)."""
    if num < 0 or not 1 <= max_objects <= len(_COLOURS):
        raise ValueError(f"num must be >= 0 and max_objects in 1..{len(_COLOURS)}")
    entries: list = []
    for index in range(num):
        base = np.random.default_rng([seed, index, 7])
        objects = _layout(base, size, 1 if task == "fss" else int(base.integers(1, max_objects + 1)))
        noise_seed = int(base.integers(2**31))
        if task in ("vos", "rvos"):
            def frame(i: int, objects=objects, s=noise_seed):
                return _render(objects, size, np.random.default_rng([s, i]), i)

            def load_frame(i: int, frame=frame):
                return frame(i)[0]

            def load_objects(i: int, frame=frame):
                return {k + 1: m for k, m in enumerate(frame(i)[1]) if m.any()}

            expressions = {k + 1: (f"the {o['colour']} {o['shape']}",) for k, o in enumerate(objects)}
            entries.append(VideoEntry(f"synthetic-{task}-{index}", num_frames, load_frame, load_objects, expressions))
            continue

        def render(objects=objects, s=noise_seed):
            return _render(objects, size, np.random.default_rng([s, 0]))

        first = objects[0]
        if task == "det":
            masks = lambda render=render: render()[1]  # noqa: E731
        else:
            masks = lambda render=render: render()[1][:1]  # noqa: E731
        entries.append(ImageEntry(
            f"synthetic-{task}-{index}", lambda render=render: render()[0], masks,
            expressions=(f"the {first['colour']} {first['shape']}",) if task == "ris" else (),
            category=first["shape"] if task == "fss" else None,
        ))
    return entries
