"""The synthetic referring world: every item is a pure function of ``(seed, task, split, index)``.

* :func:`generate_ris_image` — a still scene with referring expressions for its objects (RIS);
* :func:`generate_fss_image` — a scene holding one or two objects of a shape class among distractors (FSS);
* :func:`generate_clip` — a clip with first-appearance masks (VOS) and, with ``referring=True``, twin
  objects told apart by motion or position plus their expressions (RVOS).

Seeds: an item draws from ``numpy.random.default_rng([seed, task code, split code, index])`` only, so any
item can be made alone, in any order, on any machine. The demo's held-out world uses seeds from
:data:`HELD_OUT_SEED` on; training should stay below it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from uniref.data.synthetic.expressions import Expression, describe_objects, describe_video_objects
from uniref.data.synthetic.render import Appearance
from uniref.data.synthetic.scene import Scene, render_scene, sample_appearance, sample_scene
from uniref.data.synthetic.video import ClipLayout, clip_facts, render_clip, sample_clip_layout
from uniref.data.synthetic.vocabulary import COLOURS, SHAPES, SIZES, TEXTURES

__all__ = ["HELD_OUT_SEED", "WorldConfig", "RISImage", "FSSImage", "Clip", "item_rng", "generate_ris_image",
           "generate_fss_image", "generate_clip", "fss_class_attributes"]

HELD_OUT_SEED = 10_000
"""Seeds at or above this value are reserved for held-out evaluation (the demo uses them)."""

_TASK_CODES = {"ris": 1, "fss": 2, "vos": 3, "rvos": 4}


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and densities of the world.

    Attributes:
        height, width: image and frame size.
        num_frames: frames per clip.
        ris_objects: (min, max) objects per RIS image; crowded splits (``testB``) add two.
        fss_distractors: (min, max) objects of other shapes in an FSS image.
        clip_objects: (min, max) objects per clip (referring clips add their twins).
        expressions_per_object: sentences per referred object (RIS) / per clip object (RVOS).
        min_referable_visible: an RIS object is referred to only when this share of it is visible.
    """

    height: int = 96
    width: int = 128
    num_frames: int = 12
    ris_objects: tuple[int, int] = (3, 6)
    fss_distractors: tuple[int, int] = (1, 3)
    clip_objects: tuple[int, int] = (2, 4)
    expressions_per_object: int = 3
    rvos_expressions_per_object: int = 2
    min_referable_visible: float = 0.6

    @property
    def frame(self) -> tuple[int, int]:
        return (self.height, self.width)


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode("utf-8")) & 0x7FFFFFFF


def item_rng(seed: int, task: str, split: str, index: int) -> np.random.Generator:
    """The generator of one item (independent of every other item)."""
    return np.random.default_rng([int(seed), _TASK_CODES[task], _split_code(split), int(index)])


# ------------------------------------------------------------------------------------------ RIS


@dataclass
class RISImage:
    """A still scene and its referring expressions.

    Attributes:
        scene: image ``[H, W, 3]`` uint8, visible masks ``[n, H, W]`` bool (back to front), objects.
        expressions: object index -> its expressions (only unambiguous, referable objects appear).
    """

    scene: Scene
    expressions: dict[int, tuple[Expression, ...]]

    @property
    def image(self) -> np.ndarray:
        return self.scene.image

    @property
    def masks(self) -> np.ndarray:
        return self.scene.masks


def generate_ris_image(seed: int, index: int, config: WorldConfig = WorldConfig(), split: str = "train") -> RISImage:
    """Image ``index`` of an RIS split; ``testB`` scenes are crowded (two more objects)."""
    rng = item_rng(seed, "ris", split, index)
    lo, hi = config.ris_objects
    if split == "testB":
        lo, hi = lo + 2, hi + 2
    background, objects = sample_scene(rng, config.height, config.width, num_objects=(lo, hi))
    scene = render_scene(background, objects, config.height, config.width, rng)
    visible = scene.masks.reshape(len(objects), -1).sum(1)
    min_area = max(20, int(0.002 * config.height * config.width))
    targets = [i for i in range(len(objects))
               if scene.visible_fraction[i] >= config.min_referable_visible and visible[i] >= min_area]
    expressions = describe_objects(scene.facts, targets, config.frame, rng, per_object=config.expressions_per_object)
    return RISImage(scene, expressions)


# ------------------------------------------------------------------------------------------ FSS


@dataclass
class FSSImage:
    """An FSS image: ``mask`` ``[H, W]`` bool is the union of the visible parts of every ``category`` object."""

    image: np.ndarray
    mask: np.ndarray
    category: str
    targets: tuple[Appearance, ...]
    scene: Scene = field(repr=False)


def fss_class_attributes(seed: int, category: str, count: int, split: str = "val") -> list[tuple[str, str, str]]:
    """(colour, size, texture) of the main object of each image of a class folder.

    Image 0 (written as ``1.jpg``, the support every other query gets) differs from every other image in
    colour, size and texture; the others are drawn freely from the remaining values.
    """
    rng = np.random.default_rng([int(seed), _TASK_CODES["fss"], _split_code(split), SHAPES.index(category), 99])
    colours, sizes, textures = list(COLOURS), list(SIZES), list(TEXTURES)
    first = (colours[int(rng.integers(len(colours)))], sizes[int(rng.integers(len(sizes)))],
             textures[int(rng.integers(len(textures)))])
    out = [first]
    rest = ([c for c in colours if c != first[0]], [s for s in sizes if s != first[1]],
            [t for t in textures if t != first[2]])
    for _ in range(count - 1):
        out.append(tuple(r[int(rng.integers(len(r)))] for r in rest))  # type: ignore[misc]
    return out


def generate_fss_image(
    seed: int, category: str, index: int, config: WorldConfig = WorldConfig(), split: str = "train",
    attributes: tuple[str, str, str] | None = None,
) -> FSSImage:
    """Image ``index`` of class ``category``: one object of that shape (two with probability 0.25) among
    distractors of other shapes. ``attributes`` = (colour, size, texture) fixes the main object's look."""
    if category not in SHAPES:
        raise ValueError(f"unknown FSS class {category!r}; classes: {', '.join(SHAPES)}")
    rng = item_rng(seed, "fss", split, index * len(SHAPES) + SHAPES.index(category))
    short = min(config.height, config.width)
    colour, size, texture = attributes or (None, None, None)
    targets = [sample_appearance(rng, short, shape=category, colour=colour, size=size, texture=texture)]
    if rng.random() < 0.25:
        targets.append(sample_appearance(rng, short, shape=category))
    others = [s for s in SHAPES if s != category]
    lo, hi = config.fss_distractors
    distractors = [sample_appearance(rng, short, shape=others[int(rng.integers(len(others)))])
                   for _ in range(int(rng.integers(lo, hi + 1)))]
    background, objects = sample_scene(rng, config.height, config.width, num_objects=(0, 0),
                                       appearances=targets + distractors)
    if not any(o.appearance.shape == category for o in objects):  # could not be placed: alone on the image
        background, objects = sample_scene(rng, config.height, config.width, num_objects=(0, 0),
                                           appearances=targets[:1])
    scene = render_scene(background, objects, config.height, config.width, rng)
    keep = [i for i, o in enumerate(objects) if o.appearance.shape == category]
    mask = scene.masks[keep].any(0)
    return FSSImage(scene.image, mask, category, tuple(objects[i].appearance for i in keep), scene)


# ------------------------------------------------------------------------------------------ clips


@dataclass
class Clip:
    """A rendered clip.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8.
        labels: ``[T, H, W]`` uint8 object ids (0 = background); ids follow the order of first appearance.
        layout: objects, trajectories and z-order.
        first_frames: object id -> the frame where it first appears (its given mask is there).
        expressions: object id -> its expressions (referring clips only).
    """

    frames: np.ndarray
    labels: np.ndarray
    layout: ClipLayout
    first_frames: dict[int, int]
    expressions: dict[int, tuple[Expression, ...]]

    @property
    def object_ids(self) -> list[int]:
        return list(range(1, len(self.layout.objects) + 1))

    def masks(self, frame: int) -> dict[int, np.ndarray]:
        """``{id: [H, W] bool}`` of the objects visible on ``frame``."""
        lab = self.labels[frame]
        return {k: lab == k for k in self.object_ids if (lab == k).any()}


def generate_clip(seed: int, index: int, config: WorldConfig = WorldConfig(), split: str = "train", *,
                  referring: bool = False) -> Clip:
    """Clip ``index`` of a VOS split (``referring=False``) or an RVOS split (``referring=True``)."""
    rng = item_rng(seed, "rvos" if referring else "vos", split, index)
    layout = sample_clip_layout(rng, config.height, config.width, config.num_frames,
                                num_objects=config.clip_objects, referring=referring)
    frames, labels = render_clip(layout, rng)
    firsts = {k + 1: f for k, f in enumerate(layout.first_frames())}
    expressions: dict[int, tuple[Expression, ...]] = {}
    if referring:
        facts = clip_facts(layout)
        described = describe_video_objects(facts, range(len(facts)), config.frame, rng,
                                           per_object=config.rvos_expressions_per_object)
        expressions = {k + 1: v for k, v in described.items()}
    return Clip(frames, labels, layout, firsts, expressions)


def split_sizes(sizes: Sequence[tuple[str, int]] | dict[str, int]) -> list[tuple[str, int]]:
    """Normalise a ``{split: count}`` mapping (helper of the writers)."""
    items = list(sizes.items()) if isinstance(sizes, dict) else list(sizes)
    for name, count in items:
        if count < 0:
            raise ValueError(f"split {name!r}: count must be >= 0, got {count}")
    return items
