"""Clips: objects moving on straight or curved paths, turning, occluding each other, entering and leaving.

Object ids follow the order of first appearance (1, 2, ...), so an object that enters later has a higher id
and gets its given mask on its first visible frame. A clip is re-drawn (from the same generator) until
every object is visible on at least three frames and no object starts as a sliver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uniref.data.synthetic.expressions import DIRECTIONS, VideoFacts
from uniref.data.synthetic.render import (
    Appearance,
    Background,
    Pose,
    composite,
    rasterize,
    sample_background,
    shape_extent,
    visible_masks,
)
from uniref.data.synthetic.scene import _related_appearance, sample_appearance

__all__ = ["Trajectory", "ClipObject", "ClipLayout", "sample_clip_layout", "render_clip", "clip_facts"]

_UNIT = {"up": (-1.0, 0.0), "down": (1.0, 0.0), "left": (0.0, -1.0), "right": (0.0, 1.0)}


@dataclass(frozen=True)
class Trajectory:
    """Centre ``p0 + v t + a t^2 / 2`` (``(y, x)`` pixels, t in frames) and angle ``angle0 + omega t``."""

    p0: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    acceleration: tuple[float, float] = (0.0, 0.0)
    angle0: float = 0.0
    omega: float = 0.0

    def pose(self, t: float) -> Pose:
        cy = self.p0[0] + self.velocity[0] * t + 0.5 * self.acceleration[0] * t * t
        cx = self.p0[1] + self.velocity[1] * t + 0.5 * self.acceleration[1] * t * t
        return Pose(cy, cx, self.angle0 + self.omega * t)


@dataclass(frozen=True)
class ClipObject:
    """One object of a clip."""

    appearance: Appearance
    trajectory: Trajectory


@dataclass
class ClipLayout:
    """Everything needed to render a clip.

    Attributes:
        objects: by id order (index ``k`` is object id ``k + 1``).
        z_order: object indices, back to front.
        background: the (static) background.
        num_frames, height, width: the clip size.
        visible: ``[n, T, H, W]`` visible masks (computed once while checking the layout).
    """

    objects: tuple[ClipObject, ...]
    z_order: tuple[int, ...]
    background: Background
    num_frames: int
    height: int
    width: int
    visible: np.ndarray

    def first_frames(self) -> list[int]:
        """The first visible frame of each object."""
        return [int(np.flatnonzero(v.reshape(v.shape[0], -1).any(1))[0]) for v in self.visible]


def _direction_vector(rng: np.random.Generator, direction: str, jitter: float = 0.2) -> tuple[float, float]:
    dy, dx = _UNIT[direction]
    a = math.atan2(dy, dx) + rng.uniform(-jitter, jitter)
    return math.sin(a), math.cos(a)


def _sample_motion(rng: np.random.Generator, app: Appearance, short: int, height: int, width: int, num_frames: int,
                   *, direction: str | None = None, entering: bool = False, leaving: bool = False) -> Trajectory:
    """A trajectory: still, straight or curved; or entering the frame from outside, or leaving it."""
    angle0 = float(rng.uniform(0, 2 * math.pi))
    can_turn = app.shape not in ("circle", "ring")  # a turning disc looks still
    omega = float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.25)) if can_turn and rng.random() < 0.35 else 0.0
    extent = shape_extent(app.shape) * app.radius
    if direction is None:
        direction = "still" if rng.random() < 0.25 else DIRECTIONS[int(rng.integers(4))]
    if direction == "still" and not (entering or leaving):
        p0 = (float(rng.uniform(extent, height - extent)), float(rng.uniform(extent, width - extent)))
        return Trajectory(p0, angle0=angle0, omega=omega)
    if direction == "still":
        direction = DIRECTIONS[int(rng.integers(4))]
    uy, ux = _direction_vector(rng, direction, 0.15 if entering else 0.25)
    if entering:
        # fast enough that the first visible frame already shows a good part of the object
        speed = float(max(2.0, rng.uniform(0.3, 0.6) * app.radius))
        first = int(rng.integers(1, max(2, num_frames // 2)))
        depth = float(rng.uniform(0.6, 1.0)) * speed  # how far the leading edge is in at frame `first`
        # centre at frame `first`: just outside the border the object comes through
        if direction in ("left", "right"):
            cx = width + extent - depth if direction == "left" else -extent + depth
            cy = float(rng.uniform(extent, height - extent))
        else:
            cy = height + extent - depth if direction == "up" else -extent + depth
            cx = float(rng.uniform(extent, width - extent))
        vy, vx = uy * speed, ux * speed
        return Trajectory((cy - vy * first, cx - vx * first), (vy, vx), angle0=angle0, omega=omega)
    if leaving:
        # fully out (centre beyond the border by its extent) at frame `gone`, late in the clip
        speed = float(max(2.0, rng.uniform(0.3, 0.6) * app.radius))
        gone = int(rng.integers(num_frames // 2, num_frames - 1))
        if direction in ("left", "right"):
            cx = -extent - 1.0 if direction == "left" else width + extent + 1.0
            cy = float(rng.uniform(extent, height - extent))
        else:
            cy = -extent - 1.0 if direction == "up" else height + extent + 1.0
            cx = float(rng.uniform(extent, width - extent))
        vy, vx = uy * speed, ux * speed
        return Trajectory((cy - vy * gone, cx - vx * gone), (vy, vx), angle0=angle0, omega=omega)
    speed = float(rng.uniform(0.012, 0.03) * short)
    vy, vx = uy * speed, ux * speed
    ay = ax = 0.0
    if rng.random() < 0.4:  # curved: a sideways acceleration
        bend = float(rng.choice([-1, 1]) * rng.uniform(0.04, 0.1))
        ay, ax = -ux * bend, uy * bend
    # start so that the object stays mostly in view: the path's middle lands inside the frame
    mid_t = (num_frames - 1) / 2
    cy_mid = float(rng.uniform(extent, height - extent))
    cx_mid = float(rng.uniform(extent, width - extent))
    p0 = (cy_mid - vy * mid_t - 0.5 * ay * mid_t**2, cx_mid - vx * mid_t - 0.5 * ax * mid_t**2)
    return Trajectory(p0, (vy, vx), (ay, ax), angle0, omega)


def _clip_masks(objects: Sequence[ClipObject], z_order: Sequence[int], num_frames: int, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(visible [n, T, H, W], full areas [n])`` (areas of the whole shapes)."""
    n = len(objects)
    visible = np.zeros((n, num_frames, height, width), dtype=bool)
    for t in range(num_frames):
        rasters = [rasterize(objects[k].appearance.shape, objects[k].appearance.radius,
                             objects[k].trajectory.pose(t), height, width) for k in z_order]
        vis = visible_masks(rasters, height, width)
        for slot, k in enumerate(z_order):
            visible[k, t] = vis[slot]
    areas = np.asarray([_full_area(o.appearance) for o in objects], dtype=np.float64)
    return visible, areas


def _full_area(app: Appearance) -> int:
    r = rasterize(app.shape, app.radius, Pose(1000.0, 1000.0, 0.0), 2000, 2000)
    return int(r.inside.sum()) if r is not None else 0


def _acceptable(visible: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Per object: visible on >= 3 frames, and not a sliver where it first appears (or at frame 0)."""
    n, num_frames = visible.shape[:2]
    counts = visible.reshape(n, num_frames, -1).sum(2)
    ok = np.zeros(n, dtype=bool)
    for k in range(n):
        frames = np.flatnonzero(counts[k])
        if len(frames) < 3:
            continue
        first = counts[k, frames[0]]
        need = max(12.0, (0.25 if frames[0] == 0 else 0.08) * areas[k])
        ok[k] = first >= need
    return ok


def sample_clip_layout(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_frames: int,
    *,
    num_objects: tuple[int, int] = (2, 4),
    referring: bool = False,
    enter_prob: float = 0.45,
    leave_prob: float = 0.2,
    max_tries: int = 30,
) -> ClipLayout:
    """A clip whose objects are all visible on at least three frames.

    With ``referring``, two (sometimes three) objects share shape and colour and differ in how they move
    (or where they are), so that the clip's expressions need motion or position.
    """
    short = min(height, width)
    for attempt in range(max_tries + 1):
        background = sample_background(rng)
        count = int(rng.integers(num_objects[0], num_objects[1] + 1))
        apps: list[Appearance] = []
        directions: list[str | None] = []
        if referring:
            twin = sample_appearance(rng, short)
            n_twins = 3 if rng.random() < 0.25 else 2
            motions = rng.permutation(["still", *DIRECTIONS])[:n_twins]
            for d in motions:
                apps.append(sample_appearance(rng, short, shape=twin.shape, colour=twin.colour))
                directions.append(str(d))
        total = max(count, len(apps) + 1) if referring else count
        while len(apps) < total:
            apps.append(_related_appearance(rng, short, apps, 0.4))
            directions.append(None)
        objects = []
        for k, (app, d) in enumerate(zip(apps, directions)):
            entering = k >= 2 and rng.random() < enter_prob
            leaving = not entering and k >= 1 and d != "still" and rng.random() < leave_prob
            objects.append(ClipObject(app, _sample_motion(rng, app, short, height, width, num_frames, direction=d,
                                                          entering=entering, leaving=leaving)))
        z_order = tuple(int(i) for i in rng.permutation(len(objects)))
        visible, areas = _clip_masks(objects, z_order, num_frames, height, width)
        ok = _acceptable(visible, areas)
        at_start = visible[:, 0].reshape(len(objects), -1).sum(1) > 0
        if ok.all() and at_start.sum() >= min(2, len(objects)):
            break
        if attempt == max_tries:  # keep the objects that work; make sure the first frame shows one
            keep = [k for k in range(len(objects)) if ok[k]]
            if not any(at_start[k] for k in keep):  # rare: pin the first object, still, in the middle
                objects[0] = ClipObject(objects[0].appearance, Trajectory((height / 2, width / 2)))
                keep = [0] + [k for k in keep if k != 0]
            objects = [objects[k] for k in keep]
            z_order = tuple(int(i) for i in np.argsort([z_order.index(k) for k in keep]))
            visible, areas = _clip_masks(objects, z_order, num_frames, height, width)
    # ids by first appearance (ties: lower z first, i.e. the sampling order of the permutation)
    firsts = [int(np.flatnonzero(v.reshape(num_frames, -1).any(1))[0]) if v.any() else num_frames for v in visible]
    order = sorted(range(len(objects)), key=lambda k: (firsts[k], k))
    remap = {old: new for new, old in enumerate(order)}
    objects = tuple(objects[k] for k in order)
    z_order = tuple(remap[k] for k in z_order)
    visible = visible[order]
    return ClipLayout(objects, z_order, background, num_frames, height, width, visible)


def render_clip(layout: ClipLayout, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(frames [T, H, W, 3] uint8, labels [T, H, W] uint8)``; label ``k`` = object id ``k`` (0 background)."""
    h, w, n_frames = layout.height, layout.width, layout.num_frames
    base = layout.background.render(h, w)
    frames = np.zeros((n_frames, h, w, 3), dtype=np.uint8)
    labels = np.zeros((n_frames, h, w), dtype=np.uint8)
    for t in range(n_frames):
        objs = [(layout.objects[k].appearance, layout.objects[k].trajectory.pose(t)) for k in layout.z_order]
        frames[t], vis, _ = composite(base, objs, rng)
        for slot, k in enumerate(layout.z_order):
            labels[t][vis[slot]] = k + 1
    return frames, labels


def clip_facts(layout: ClipLayout) -> tuple[VideoFacts, ...]:
    """Motion, turn and mean position of every object over its visible frames."""
    facts = []
    n_frames = layout.num_frames
    short = min(layout.height, layout.width)
    for k, obj in enumerate(layout.objects):
        seen = np.flatnonzero(layout.visible[k].reshape(n_frames, -1).any(1))
        f0, f1 = int(seen[0]), int(seen[-1])
        centres = np.asarray([(p.cy, p.cx) for p in (obj.trajectory.pose(t) for t in seen)])
        dy, dx = centres[-1] - centres[0]
        dist = math.hypot(dy, dx)
        direction = None
        weak: set[str] = set()
        if dist <= 0.5:
            direction = "still"
        if dist < 4.0:
            weak.add("still")
        for d, (uy, ux) in _UNIT.items():
            along = dy * uy + dx * ux
            across = abs(dy * ux - dx * uy)
            if dist >= max(6.0, 0.06 * short) and along >= 2.0 * across and f1 > f0:
                direction = d
            if dist >= 2.0 and along > 0.4 * dist:
                weak.add(d)
        if direction is not None:
            weak.add(direction)
        omega = abs(obj.trajectory.omega)
        app = obj.appearance
        facts.append(VideoFacts(
            app.shape, app.colour, app.texture, app.size, float(_full_area(app)), float(centres[:, 1].mean()),
            float(centres[:, 0].mean()), app.radius, direction, frozenset(weak), omega >= 0.07, omega > 0.0,
        ))
    return tuple(facts)

