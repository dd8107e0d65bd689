"""Rasterising shapes, painting textures and backgrounds, and compositing objects with occlusion.

Masks are exact: a pixel belongs to a shape when its centre passes the shape's inside test, and the
same test decides which pixels are painted. An object's *visible* mask is its shape minus every shape in
front of it (objects are given back to front), so visible masks never overlap.

Arrays: images ``[H, W, 3]`` (float32 while painting, uint8 out), masks ``[H, W]`` / ``[n, H, W]`` bool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uniref.data.synthetic.vocabulary import COLOURS, SHAPES, TEXTURES

__all__ = ["Appearance", "Pose", "Raster", "Background", "rasterize", "shape_extent", "composite",
           "visible_masks", "sample_background"]


def _regular(n: int, radius: float) -> np.ndarray:
    angles = -math.pi / 2 + 2 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)


def _star(outer: float, inner: float, points: int = 5) -> np.ndarray:
    angles = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


def _cross(half_length: float, half_width: float) -> np.ndarray:
    a, b = half_length, half_width
    return np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b),
                     (-a, -b), (-b, -b)], dtype=np.float64)


# Unit-radius outlines (x, y), scaled so that the shapes of one size class cover similar areas
# (0.75-1.0 of the unit circle's).
_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]),
    "triangle": _regular(3, 1.3) + np.array([0.0, 0.0]),
    "star": _star(1.3, 0.55),
    "cross": _cross(1.0, 0.36),
}
_RING_HOLE = 0.5  # inner radius / outer radius: the ring covers 0.75 of its disc
_EXTENT = {"circle": 1.0, "ring": 1.0, **{k: float(np.sqrt((p**2).sum(1)).max()) for k, p in _POLYGONS.items()}}


def shape_extent(shape: str) -> float:
    """The largest distance from the centre to the outline, in units of the radius."""
    return _EXTENT[shape]


@dataclass(frozen=True)
class Appearance:
    """What an object looks like, independent of where it is.

    Attributes:
        shape, colour, texture, size: vocabulary values (``size`` is the size class).
        radius: in pixels.
        rgb: the (jittered) base colour, 0-255.
        seed: drives the object's own texture noise, so that it moves with the object.
    """

    shape: str
    colour: str
    texture: str
    size: str
    radius: float
    rgb: tuple[float, float, float]
    seed: int

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.colour not in COLOURS or self.texture not in TEXTURES:
            raise ValueError(f"unknown appearance {self.shape}/{self.colour}/{self.texture}")


@dataclass(frozen=True)
class Pose:
    """Centre (pixels, y down) and rotation (radians) of an object in one image or frame."""

    cy: float
    cx: float
    angle: float = 0.0


@dataclass
class Raster:
    """One shape on a pixel window: ``inside`` ``[h, w]`` bool at ``[y0:y0+h, x0:x0+w]``; ``u, v`` ``[h, w]``
    are the pixel centres in the object's own (rotated) frame, in pixels."""

    y0: int
    x0: int
    inside: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def window(self) -> tuple[slice, slice]:
        h, w = self.inside.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    def full(self, height: int, width: int) -> np.ndarray:
        """The shape as a full ``[H, W]`` mask."""
        out = np.zeros((height, width), dtype=bool)
        out[self.window] = self.inside
        return out


def _in_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule for every point (works for the concave star and cross)."""
    inside = np.zeros(x.shape, dtype=bool)
    nxt = np.roll(poly, -1, axis=0)
    for (ax, ay), (bx, by) in zip(poly, nxt):
        if ay == by:
            continue
        crosses = (ay > y) != (by > y)
        x_cross = ax + (bx - ax) * (y - ay) / (by - ay)
        inside ^= crosses & (x < x_cross)
    return inside


def rasterize(shape: str, radius: float, pose: Pose, height: int, width: int) -> Raster | None:
    """The pixels of one shape, or None when it lies entirely outside the image."""
    reach = shape_extent(shape) * radius + 1.0
    y0, y1 = max(0, int(math.floor(pose.cy - reach))), min(height, int(math.ceil(pose.cy + reach)) + 1)
    x0, x1 = max(0, int(math.floor(pose.cx - reach))), min(width, int(math.ceil(pose.cx + reach)) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - pose.cy
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - pose.cx
    c, s = math.cos(pose.angle), math.sin(pose.angle)
    # object frame: rotate the image offsets by -angle
    u = c * xs + s * ys
    v = -s * xs + c * ys
    if shape in ("circle", "ring"):
        d2 = u * u + v * v
        inside = d2 <= radius * radius
        if shape == "ring":  # the hole shows what is behind
            inside &= d2 >= (_RING_HOLE * radius) ** 2
    else:
        inside = _in_polygon(u / radius, v / radius, _POLYGONS[shape])
    if not inside.any():
        return None
    return Raster(y0, x0, inside, u, v)


def _texture(appearance: Appearance, raster: Raster) -> np.ndarray:
    """``[h, w, 3]`` float colours of the object over its window (before the visibility cut)."""
    rgb = np.asarray(appearance.rgb, dtype=np.float32)
    u, v = raster.u, raster.v
    h, w = u.shape
    r = appearance.radius
    if appearance.texture == "striped":
        period = float(np.clip(r * 0.5, 3.0, 6.0))
        dark = (np.floor(u / (period / 2)) % 2) == 1
        return np.where(dark[..., None], rgb * 0.42, rgb)
    if appearance.texture == "dotted":
        spacing = float(np.clip(r * 0.55, 4.0, 7.0))
        du = np.mod(u, spacing) - spacing / 2
        dv = np.mod(v, spacing) - spacing / 2
        dot = du * du + dv * dv <= (0.3 * spacing) ** 2
        return np.where(dot[..., None], rgb * 0.38, rgb)
    if appearance.texture == "speckled":
        # noise fixed to the object (indexed by object coordinates), so it moves and turns with it
        tile = np.random.default_rng(appearance.seed).standard_normal((16, 16, 1), dtype=np.float32)
        iu = np.rint(u).astype(np.int64) % 16
        iv = np.rint(v).astype(np.int64) % 16
        return np.clip(rgb + 42.0 * tile[iv, iu], 0, 255)
    return np.broadcast_to(rgb, (h, w, 3))


@dataclass(frozen=True)
class Background:
    """A desaturated textured or noisy background, deterministic from its fields.

    Attributes:
        kind: "noise", "gradient", "checker", "stripes" or "blobs".
        tint_a, tint_b: the two low-saturation base colours.
        scale: cell / stripe size in pixels.
        angle: direction of gradients and stripes.
        noise: per-pixel noise standard deviation.
        seed: drives the noise.
    """

    kind: str
    tint_a: tuple[float, float, float]
    tint_b: tuple[float, float, float]
    scale: float
    angle: float
    noise: float
    seed: int

    def render(self, height: int, width: int) -> np.ndarray:
        """``[H, W, 3]`` float32."""
        rng = np.random.default_rng(self.seed)
        a = np.asarray(self.tint_a, dtype=np.float32)
        b = np.asarray(self.tint_b, dtype=np.float32)
        ys = np.arange(height, dtype=np.float32)[:, None]
        xs = np.arange(width, dtype=np.float32)[None, :]
        along = math.cos(self.angle) * xs + math.sin(self.angle) * ys
        if self.kind == "gradient":
            t = (along - along.min()) / max(float(along.max() - along.min()), 1.0)
        elif self.kind == "checker":
            t = ((np.floor(ys / self.scale) + np.floor(xs / self.scale)) % 2).astype(np.float32)
        elif self.kind == "stripes":
            t = (np.floor(along / self.scale) % 2).astype(np.float32)
        elif self.kind == "blobs":
            coarse = rng.random((height // 16 + 2, width // 16 + 2)).astype(np.float32)
            yi = ys / 16.0
            xi = xs / 16.0
            y_lo, x_lo = np.floor(yi).astype(np.int64), np.floor(xi).astype(np.int64)
            fy, fx = yi - y_lo, xi - x_lo
            t = ((1 - fy) * (1 - fx) * coarse[y_lo, x_lo] + (1 - fy) * fx * coarse[y_lo, x_lo + 1]
                 + fy * (1 - fx) * coarse[y_lo + 1, x_lo] + fy * fx * coarse[y_lo + 1, x_lo + 1])
        else:  # noise
            t = np.zeros((height, width), dtype=np.float32)
        t = np.broadcast_to(t, (height, width))[..., None]
        image = a * (1 - t) + b * t
        return image + self.noise * rng.standard_normal((height, width, 3), dtype=np.float32)


_BACKGROUND_KINDS = ("noise", "gradient", "checker", "stripes", "blobs")


def sample_background(rng: np.random.Generator) -> Background:
    """A random background; tints are greys with a weak colour cast, away from the object colours."""
    def tint() -> tuple[float, float, float]:
        grey = rng.uniform(55, 150)
        return tuple(float(np.clip(grey + c, 0, 255)) for c in rng.normal(0, 10, 3))

    kind = _BACKGROUND_KINDS[int(rng.integers(len(_BACKGROUND_KINDS)))]
    a = tint()
    b = tuple(float(np.clip(x + d, 0, 255)) for x, d in zip(a, rng.uniform(-35, 35) + rng.normal(0, 6, 3)))
    noise = float(rng.uniform(12, 28) if kind == "noise" else rng.uniform(3, 12))
    return Background(kind, a, b, float(rng.uniform(6, 16)), float(rng.uniform(0, math.pi)), noise,
                      int(rng.integers(2**31)))


def visible_masks(rasters: Sequence[Raster | None], height: int, width: int) -> np.ndarray:
    """``[n, H, W]`` visible masks of shapes given back to front."""
    out = np.zeros((len(rasters), height, width), dtype=bool)
    occupied = np.zeros((height, width), dtype=bool)
    for i in range(len(rasters) - 1, -1, -1):
        r = rasters[i]
        if r is None:
            continue
        win = r.window
        vis = r.inside & ~occupied[win]
        out[i][win] = vis
        occupied[win] |= r.inside
    return out


def composite(
    background: np.ndarray,
    objects: Sequence[tuple[Appearance, Pose]],
    rng: np.random.Generator,
    *,
    pixel_noise: float = 3.0,
) -> tuple[np.ndarray, np.ndarray, list[Raster | None]]:
    """Paint objects (back to front) over a ``[H, W, 3]`` float background.

    Returns ``(image [H, W, 3] uint8, visible masks [n, H, W] bool, rasters)``; ``rng`` draws the sensor
    noise only.
    """
    height, width = background.shape[:2]
    rasters = [rasterize(a.shape, a.radius, p, height, width) for a, p in objects]
    masks = visible_masks(rasters, height, width)
    image = background.copy()
    for (appearance, _), raster, mask in zip(objects, rasters, masks):
        if raster is None:
            continue
        win = raster.window
        vis = mask[win]
        if vis.any():
            image[win][vis] = _texture(appearance, raster)[vis]
    if pixel_noise > 0:
        image += pixel_noise * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), masks, rasters
