"""Training entries straight from the generator (no disk): the ``ImageEntry`` / ``VideoEntry`` sequences the
training engine's sample builders take (:mod:`uniref.training.samples`).

``world_entries(task, num, seed=...)`` is lazy: entry ``i`` is generated when it is indexed (a few ms for
an image, ~30 ms for a clip), from ``(seed, task, split, i)`` only, so workers and resumed runs see the
same data. Per task:

* ``det`` — an image, the visible masks of all its objects and their classes (shape x colour x texture, 192
  classes: the world's stand-in for the Objects365 pretraining, which teaches the backbone what things look like);
* ``ris`` — an image, one referred object (drawn per entry) and its expressions;
* ``fss`` — an image whose class is a shape (entries cycle through the six shapes), mask = all its objects
  of that shape; supports are other entries of the class;
* ``vos`` — a clip, objects by id with their visible masks per frame;
* ``rvos`` — a referring clip and the expressions of its objects.

:class:`SyntheticTaskDataset` wraps one task as a ``torch.utils.data.Dataset`` of augmented
:class:`~uniref.training.samples.TrainSample` for loops that do not use the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch.utils.data

from uniref.data.synthetic.vocabulary import COLOURS, SHAPES, TEXTURES
from uniref.data.synthetic.world import WorldConfig, generate_clip, generate_fss_image, generate_ris_image
from uniref.training.samples import ImageEntry, TrainSample, VideoEntry, build_sample_builder
from uniref.training.transforms import AugmentConfig

__all__ = ["TASKS", "NUM_APPEARANCE_CLASSES", "WorldEntries", "appearance_class", "world_entries",
           "SyntheticTaskDataset", "demo_augment"]

TASKS = ("det", "ris", "fss", "vos", "rvos")


class WorldEntries(Sequence):
    """A lazy sequence of training entries of one task (see the module docstring)."""

    def __init__(self, task: str, num: int, seed: int = 0, config: WorldConfig = WorldConfig(), split: str = "train"):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        self.task, self.num, self.seed, self.config, self.split = task, int(num), int(seed), config, split

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.num))]
        index = int(index)
        if index < 0:
            index += self.num
        if not 0 <= index < self.num:
            raise IndexError(f"entry {index} out of range ({self.num} entries)")
        return getattr(self, f"_{self.task}")(index)

    def _name(self, index: int) -> str:
        return f"synthetic-{self.task}-{self.split}-{self.seed}-{index}"

    def _det(self, index: int) -> ImageEntry:
        item = generate_ris_image(self.seed, index, self.config, self.split)
        visible = item.masks.reshape(len(item.masks), -1).any(1)
        image, masks = item.image, item.masks[visible]
        labels = np.array([appearance_class(o.appearance) for o in item.scene.objects], dtype=np.int64)[visible]
        return ImageEntry(self._name(index), lambda: image, lambda: masks, load_labels=lambda: labels)

    def _ris(self, index: int) -> ImageEntry:
        item = generate_ris_image(self.seed, index, self.config, self.split)
        referred = sorted(item.expressions)
        if not referred:  # no object could be described: an entry the builder will skip
            return ImageEntry(self._name(index), lambda: item.image, lambda: item.masks[:1], expressions=())
        pick = np.random.default_rng([self.seed, index, 17]).integers(len(referred))
        k = referred[int(pick)]
        image, mask = item.image, item.masks[k : k + 1]
        return ImageEntry(f"{self._name(index)}-obj{k}", lambda: image, lambda: mask,
                          expressions=tuple(e.text for e in item.expressions[k]))

    def _fss(self, index: int) -> ImageEntry:
        shape = SHAPES[index % len(SHAPES)]

        # rendered on first use: the FSS builder reads every entry's category when it starts
        @functools.cache
        def item():
            return generate_fss_image(self.seed, shape, index // len(SHAPES), self.config, self.split)

        return ImageEntry(self._name(index), lambda: item().image, lambda: item().mask[None], category=shape)

    def _video(self, index: int, referring: bool) -> VideoEntry:
        clip = generate_clip(self.seed, index, self.config, self.split, referring=referring)
        expressions = {k: tuple(e.text for e in v) for k, v in clip.expressions.items()}
        return VideoEntry(self._name(index), self.config.num_frames, lambda t: clip.frames[t], clip.masks,
                          expressions)

    def _vos(self, index: int) -> VideoEntry:
        return self._video(index, False)

    def _rvos(self, index: int) -> VideoEntry:
        return self._video(index, True)


NUM_APPEARANCE_CLASSES = len(SHAPES) * len(COLOURS) * len(TEXTURES)
"""Detection classes of the world: every (shape, colour, texture) combination."""


def appearance_class(appearance) -> int:
    """The detection class of an object: its (shape, colour, texture) combination, in ``[0, 192)``."""
    colours = list(COLOURS)
    return ((SHAPES.index(appearance.shape) * len(colours) + colours.index(appearance.colour)) * len(TEXTURES)
            + TEXTURES.index(appearance.texture))


def world_entries(task: str, num: int, *, seed: int = 0, config: WorldConfig | None = None,
                  split: str = "train") -> WorldEntries:
    """``num`` lazy training entries of ``task`` from the synthetic world of ``seed``."""
    return WorldEntries(task, num, seed, config or WorldConfig(), split)


def demo_augment(config: WorldConfig = WorldConfig()) -> AugmentConfig:
    """Augmentation at the world's scale: flips, mild multi-scale, no crop (crops could cut away the objects
    an ordinal or a relation is about)."""
    short = min(config.height, config.width)
    return AugmentConfig(short_sizes=(short - 16, short, short + 16),
                         max_size=int(max(config.height, config.width) * 1.3),
                         flip_prob=0.5, crop_prob=0.0, crop_pre_sizes=(), crop_range=(short, short))


class SyntheticTaskDataset(torch.utils.data.Dataset):
    """Augmented :class:`TrainSample` of one task, drawn by the engine's sample builders.

    Sample ``i`` of epoch ``e`` uses the generator ``[seed, i, e]``; call :meth:`set_epoch` to redraw the
    augmentations (and the RIS sentence, the FSS support, the clip's frames).
    """

    def __init__(self, task: str, num: int, *, seed: int = 0, config: WorldConfig | None = None,
                 augment: AugmentConfig | None = None, split: str = "train", sampling_range: int = 10):
        self.entries = world_entries(task, num, seed=seed, config=config, split=split)
        self.builder = build_sample_builder(task, self.entries, augment or demo_augment(self.entries.config),
                                            sampling_range=sampling_range)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> TrainSample:
        return self.builder(int(index), np.random.default_rng([self.seed, 1_000_003, self.epoch, int(index)]))
