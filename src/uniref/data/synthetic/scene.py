"""Still scenes: sampling objects that share attributes (so that relations and ordinals are needed), placing
them with bounded occlusion, and rendering them.

Objects are kept back to front; the masks are the visible parts. Every random choice comes from the
``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

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
from uniref.data.synthetic.vocabulary import COLOURS, SHAPES, SIZE_RADIUS, SIZES, TEXTURES

__all__ = ["SceneObject", "Scene", "Facts", "sample_appearance", "sample_scene", "render_scene", "scene_facts"]

_COLOUR_NAMES = tuple(COLOURS)
_TEXTURE_CDF = (0.4, 0.6, 0.8)  # solid 0.4, the three patterns 0.2 each
_SIZE_CDF = (0.35, 0.7)  # small 0.35, medium 0.35, large 0.3


def _weighted(rng: np.random.Generator, cdf: tuple[float, ...]) -> int:
    u = rng.random()
    return next((i for i, c in enumerate(cdf) if u < c), len(cdf))


@dataclass(frozen=True)
class SceneObject:
    """One object of a still scene."""

    appearance: Appearance
    pose: Pose


@dataclass(frozen=True)
class Facts:
    """What expressions may talk about, per object (geometry of the whole shape, not of its visible part).

    ``area`` is the pixel area of the whole (unoccluded, unclipped) shape.
    """

    shape: str
    colour: str
    texture: str
    size: str
    area: float
    cx: float
    cy: float
    radius: float


@dataclass
class Scene:
    """A rendered still scene.

    Attributes:
        image: ``[H, W, 3]`` uint8.
        masks: ``[n, H, W]`` bool visible masks, objects back to front.
        objects: the objects, back to front.
        full_areas: ``[n]`` pixel areas of the whole shapes inside the image.
        background: the background's kind.
    """

    image: np.ndarray
    masks: np.ndarray
    objects: tuple[SceneObject, ...]
    full_areas: np.ndarray
    background: str = ""
    facts: tuple[Facts, ...] = field(default=())

    @property
    def visible_fraction(self) -> np.ndarray:
        """``[n]`` visible area / whole area."""
        return self.masks.reshape(len(self.objects), -1).sum(1) / np.maximum(self.full_areas, 1)


def sample_appearance(
    rng: np.random.Generator, short_side: int, *, shape: str | None = None, colour: str | None = None,
    texture: str | None = None, size: str | None = None,
) -> Appearance:
    """An object appearance; the given attributes are kept, the others drawn."""
    shape = shape or SHAPES[int(rng.integers(len(SHAPES)))]
    colour = colour or _COLOUR_NAMES[int(rng.integers(len(_COLOUR_NAMES)))]
    if texture is None:
        texture = TEXTURES[_weighted(rng, _TEXTURE_CDF)]
    size = size or SIZES[_weighted(rng, _SIZE_CDF)]
    lo, hi = SIZE_RADIUS[size]
    radius = float(rng.uniform(lo, hi) * short_side)
    base = np.asarray(COLOURS[colour], dtype=np.float64)
    rgb = np.clip(base * rng.uniform(0.88, 1.08) + rng.normal(0, 6, 3), 0, 255)
    return Appearance(shape, colour, texture, size, radius, (float(rgb[0]), float(rgb[1]), float(rgb[2])),
                      int(rng.integers(2**31)))


def _related_appearance(rng: np.random.Generator, short_side: int, others: Sequence[Appearance],
                        twin_prob: float) -> Appearance:
    """Often a relative of an existing object (same shape, sometimes same colour too), so that a shape or a
    colour alone does not single objects out."""
    if others and rng.random() < twin_prob:
        ref = others[int(rng.integers(len(others)))]
        draw = rng.random()
        if draw < 0.45:
            return sample_appearance(rng, short_side, shape=ref.shape, colour=ref.colour)
        if draw < 0.8:
            return sample_appearance(rng, short_side, shape=ref.shape)
        return sample_appearance(rng, short_side, colour=ref.colour)
    return sample_appearance(rng, short_side)


def sample_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    num_objects: tuple[int, int] = (3, 6),
    twin_prob: float = 0.55,
    min_visible: float = 0.55,
    appearances: Sequence[Appearance] = (),
    max_tries: int = 40,
) -> tuple[Background, list[SceneObject]]:
    """Place objects one by one on top of the previous ones.

    A placement is kept only when every object keeps at least ``min_visible`` of its area, so objects
    overlap but none is hidden. ``appearances`` are placed first (e.g. the FSS targets); then random
    objects up to a count drawn from ``num_objects`` (inclusive).
    """
    short = min(height, width)
    background = sample_background(rng)
    count = int(rng.integers(num_objects[0], num_objects[1] + 1))
    wanted = list(appearances)
    while len(wanted) < max(count, len(appearances)):
        wanted.append(_related_appearance(rng, short, wanted, twin_prob))
    order = rng.permutation(len(wanted))  # z-order: the given ones are not always at the back
    placed: list[SceneObject] = []
    rasters = []
    areas = []
    for k in order:
        app = wanted[int(k)]
        margin = shape_extent(app.shape) * app.radius
        for _ in range(max_tries):
            pose = Pose(float(rng.uniform(margin, height - margin)), float(rng.uniform(margin, width - margin)),
                        float(rng.uniform(0, 2 * np.pi)))
            raster = rasterize(app.shape, app.radius, pose, height, width)
            if raster is None:
                continue
            trial = rasters + [raster]
            vis = visible_masks(trial, height, width).reshape(len(trial), -1).sum(1)
            full = np.asarray(areas + [int(raster.inside.sum())])
            if np.all(vis >= min_visible * full):
                placed.append(SceneObject(app, pose))
                rasters.append(raster)
                areas.append(int(raster.inside.sum()))
                break
    return background, placed


def scene_facts(objects: Sequence[SceneObject], full_areas: Sequence[float]) -> tuple[Facts, ...]:
    """The :class:`Facts` of each object."""
    return tuple(
        Facts(o.appearance.shape, o.appearance.colour, o.appearance.texture, o.appearance.size, float(a),
              o.pose.cx, o.pose.cy, o.appearance.radius)
        for o, a in zip(objects, full_areas)
    )


def render_scene(background: Background, objects: Sequence[SceneObject], height: int, width: int,
                 rng: np.random.Generator) -> Scene:
    """Render a placed scene (``rng`` draws the sensor noise)."""
    image, masks, rasters = composite(background.render(height, width), [(o.appearance, o.pose) for o in objects],
                                      rng)
    areas = np.asarray([0 if r is None else int(r.inside.sum()) for r in rasters], dtype=np.int64)
    return Scene(image, masks, tuple(objects), areas, background.kind, scene_facts(objects, areas))
