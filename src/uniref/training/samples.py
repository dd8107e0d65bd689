"""Per-task training samples (spec 10.1, 10.4): what a dataset entry becomes after sampling and augmentation.

Datasets are turned into two kinds of lazy entries, :class:`ImageEntry` and :class:`VideoEntry`; a builder
per task draws one :class:`TrainSample` from an entry with an explicit random generator:

* detection: the image and all its instances, no reference;
* RIS: the image, the referred object and one of its expressions (cleaned; "left"/"right" swapped when
  flipped; no crop when the expression has an ordinal word, as a crop could change which object is "second");
* FSS: a query and one support of the same class, each augmented independently;
* VOS / RVOS: two frames at most ``sampling_range`` apart, the earlier being the reference, one object
  present in both; a static image becomes two identical frames that get different crops.

Arrays: images ``[H, W, 3]`` uint8 RGB; masks ``[n, H, W]`` bool.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from uniref.modeling.text.tokenizer import clean_expression, tokenize
from uniref.training.transforms import AugmentConfig, apply_plan, plan_clip

__all__ = [
    "TASKS",
    "ImageEntry",
    "VideoEntry",
    "TrainSample",
    "TrainBatch",
    "SampleError",
    "DetectionBuilder",
    "RISBuilder",
    "FSSBuilder",
    "VideoBuilder",
    "build_sample_builder",
    "collate",
    "concat_batches",
    "has_ordinal_word",
    "static_video",
]

TASKS = ("det", "ris", "fss", "vos", "rvos")
_ORDINALS = {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"}
_MAX_AUGMENT_TRIES = 10


class SampleError(ValueError):
    """An entry cannot give a valid training sample (e.g. no object in two frames)."""


@dataclass(frozen=True)
class ImageEntry:
    """One image of a training set, decoded on demand.

    Attributes:
        sample_id: a stable id (used in error messages and logs).
        load_image: ``() -> [H, W, 3]`` uint8 RGB.
        load_masks: ``() -> [n, H, W]`` bool instance masks (RIS: the referred object, n = 1; FSS: the
            class's foreground).
        expressions: referring expressions of the (single) object, RIS only.
        category: the class name, FSS only (supports are drawn from the same category).
        load_labels: ``() -> [n]`` int class ids of the instances, detection only; None: class-agnostic (every
            instance is class 0, as in every UniRef++ stage after the Objects365 pretraining).
    """

    sample_id: str
    load_image: Callable[[], np.ndarray]
    load_masks: Callable[[], np.ndarray]
    expressions: tuple[str, ...] = ()
    category: str | None = None
    load_labels: Callable[[], np.ndarray] | None = None


@dataclass(frozen=True)
class VideoEntry:
    """One video of a training set (only its annotated frames), decoded on demand.

    Attributes:
        sample_id: a stable id.
        num_frames: number of annotated frames.
        load_frame: ``i -> [H, W, 3]`` uint8 RGB of annotated frame ``i``.
        load_objects: ``i -> {object id: [H, W] bool}``, the objects visible in frame ``i``.
        expressions: object id -> its referring expressions (RVOS).
    """

    sample_id: str
    num_frames: int
    load_frame: Callable[[int], np.ndarray]
    load_objects: Callable[[int], dict[int, np.ndarray]]
    expressions: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


def static_video(entry: ImageEntry) -> VideoEntry:
    """A one-frame video of an image (COCO / RefCOCO in the video stage): objects get ids 1..n."""

    def objects(_: int) -> dict[int, np.ndarray]:
        return {i + 1: m for i, m in enumerate(entry.load_masks()) if m.any()}

    expressions = {1: entry.expressions} if entry.expressions else {}
    return VideoEntry(entry.sample_id, 1, lambda _: entry.load_image(), objects, expressions)


@dataclass
class TrainSample:
    """One augmented example.

    Attributes:
        sample_id: the entry id (plus the frames / support used).
        image: ``[H, W, 3]`` uint8, the image to segment.
        masks: ``[n, H, W]`` bool targets.
        expression: cleaned sentence (RIS, RVOS).
        ref_image, ref_mask: ``[H', W', 3]`` uint8 and ``[H', W']`` bool mask reference (FSS, VOS, RVOS).
        labels: ``[n]`` int64 class ids of the targets (multi-class detection), or None (all class 0).
    """

    sample_id: str
    image: np.ndarray
    masks: np.ndarray
    expression: str | None = None
    ref_image: np.ndarray | None = None
    ref_mask: np.ndarray | None = None
    labels: np.ndarray | None = None


def has_ordinal_word(text: str) -> bool:
    """True when the sentence contains first ... tenth (the official crop exclusion)."""
    return any(w in _ORDINALS for w in re.findall(r"[a-z]+", text.lower()))


def _check_image(image: np.ndarray, masks: np.ndarray, what: str) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SampleError(f"{what}: image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise SampleError(f"{what}: masks {masks.shape} do not match image {image.shape}")


def _augment(
    image: np.ndarray, masks: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, *, allow_crop: bool,
    need_objects: bool
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Augment one image; with ``need_objects``, redraw until every mask keeps a pixel (then drop the crop)."""
    if need_objects and not masks.reshape(masks.shape[0], -1).any(1).all():
        raise SampleError("an object mask is empty before augmentation")
    for attempt in range(_MAX_AUGMENT_TRIES + 1):
        crop = allow_crop and attempt < _MAX_AUGMENT_TRIES
        (plan,) = plan_clip(cfg, rng, [image.shape[:2]], allow_crop=crop)
        img, msk = apply_plan(image, masks.astype(bool), plan, cfg)
        if not need_objects or msk.reshape(msk.shape[0], -1).any(1).all():
            return img, msk, plan.flip
    return img, msk, plan.flip


class DetectionBuilder:
    """Detection/segmentation of every instance, without a reference: class-agnostic, or with the entries'
    class ids (a multi-class pretraining, like the official Objects365 stage)."""

    task = "det"

    def __init__(self, entries: Sequence[ImageEntry], augment: AugmentConfig):
        self.entries, self.augment = entries, augment

    def __len__(self) -> int:
        return len(self.entries)

    def __call__(self, index: int, rng: np.random.Generator) -> TrainSample:
        entry = self.entries[index]
        image, masks = entry.load_image(), np.asarray(entry.load_masks(), dtype=bool)
        _check_image(image, masks, entry.sample_id)
        img, msk, _ = _augment(image, masks, self.augment, rng, allow_crop=True, need_objects=False)
        keep = msk.reshape(msk.shape[0], -1).any(1)  # instances cropped away are dropped
        labels = None
        if entry.load_labels is not None:
            labels = np.asarray(entry.load_labels(), dtype=np.int64).reshape(-1)
            if labels.shape[0] != masks.shape[0]:
                raise SampleError(f"{entry.sample_id}: {labels.shape[0]} labels for {masks.shape[0]} masks")
            labels = labels[keep]
        return TrainSample(entry.sample_id, img, msk[keep], labels=labels)


class RISBuilder:
    """Referring image segmentation: one object, one of its expressions."""

    task = "ris"

    def __init__(self, entries: Sequence[ImageEntry], augment: AugmentConfig):
        self.entries, self.augment = entries, augment

    def __len__(self) -> int:
        return len(self.entries)

    def __call__(self, index: int, rng: np.random.Generator) -> TrainSample:
        entry = self.entries[index]
        if not entry.expressions:
            raise SampleError(f"RIS entry {entry.sample_id} has no expression")
        text = entry.expressions[int(rng.integers(len(entry.expressions)))]
        image, masks = entry.load_image(), np.asarray(entry.load_masks(), dtype=bool)
        _check_image(image, masks, entry.sample_id)
        if masks.shape[0] != 1:
            masks = masks.any(0, keepdims=True)  # several parts of one referred object
        img, msk, flipped = _augment(
            image, masks, self.augment, rng, allow_crop=not has_ordinal_word(text), need_objects=True
        )
        return TrainSample(entry.sample_id, img, msk, expression=clean_expression(text, flipped))


class FSSBuilder:
    """Few-shot segmentation: the query and one support of its class, augmented independently."""

    task = "fss"

    def __init__(self, entries: Sequence[ImageEntry], augment: AugmentConfig):
        self.entries, self.augment = entries, augment
        self.by_category: dict[str, list[int]] = {}
        for i in range(len(entries)):
            category = entries[i].category
            if category is None:
                raise SampleError(f"FSS entry {entries[i].sample_id} has no category")
            self.by_category.setdefault(category, []).append(i)

    def __len__(self) -> int:
        return len(self.entries)

    def _one(self, entry: ImageEntry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, masks = entry.load_image(), np.asarray(entry.load_masks(), dtype=bool)
        _check_image(image, masks, entry.sample_id)
        img, msk, _ = _augment(image, masks.any(0, keepdims=True), self.augment, rng, allow_crop=True,
                               need_objects=True)
        return img, msk

    def __call__(self, index: int, rng: np.random.Generator) -> TrainSample:
        entry = self.entries[index]
        others = [i for i in self.by_category[entry.category] if i != index]
        # A class with a single image supports itself (under another augmentation).
        support_index = others[int(rng.integers(len(others)))] if others else index
        support = self.entries[support_index]
        img, msk = self._one(entry, rng)
        ref_img, ref_msk = self._one(support, rng)
        return TrainSample(f"{entry.sample_id}|support={support.sample_id}", img, msk, ref_image=ref_img,
                           ref_mask=ref_msk[0])


class VideoBuilder:
    """VOS / RVOS clips of two frames: frame 0 (earlier) is the reference, frame 1 the target."""

    def __init__(self, entries: Sequence[VideoEntry], augment: AugmentConfig, task: str, sampling_range: int = 10,
                 max_tries: int = 10):
        if task not in ("vos", "rvos"):
            raise ValueError(f"VideoBuilder task must be 'vos' or 'rvos', got {task!r}")
        if sampling_range < 1:
            raise ValueError(f"sampling_range must be >= 1, got {sampling_range}")
        self.entries, self.augment, self.task = entries, augment, task
        self.sampling_range, self.max_tries = sampling_range, max_tries

    def __len__(self) -> int:
        return len(self.entries)

    def _frames(self, n: int, rng: np.random.Generator) -> tuple[int, int]:
        if n == 1:
            return 0, 0
        t = int(rng.integers(n))
        lo, hi = max(0, t - self.sampling_range), min(n - 1, t + self.sampling_range)
        choices = [i for i in range(lo, hi + 1) if i != t]
        other = choices[int(rng.integers(len(choices)))]
        return min(t, other), max(t, other)

    def __call__(self, index: int, rng: np.random.Generator) -> TrainSample:
        entry = self.entries[index]
        if entry.num_frames < 1:
            raise SampleError(f"video {entry.sample_id} has no annotated frame")
        for _ in range(self.max_tries):
            f0, f1 = self._frames(entry.num_frames, rng)
            objs0, objs1 = entry.load_objects(f0), entry.load_objects(f1)
            ids = sorted(i for i in objs0 if i in objs1 and objs0[i].any() and objs1[i].any())
            if self.task == "rvos":
                ids = [i for i in ids if entry.expressions.get(i)]
            if not ids:
                continue
            obj = ids[int(rng.integers(len(ids)))]
            frames = [entry.load_frame(f0), entry.load_frame(f1)]
            masks = [objs0[obj][None], objs1[obj][None]]
            for img, msk in zip(frames, masks):
                _check_image(img, msk, entry.sample_id)
            for attempt in range(_MAX_AUGMENT_TRIES + 1):
                plans = plan_clip(self.augment, rng, [f.shape[:2] for f in frames],
                                  allow_crop=attempt < _MAX_AUGMENT_TRIES)
                out = [apply_plan(f, m, p, self.augment) for f, m, p in zip(frames, masks, plans)]
                if all(m.any() for _, m in out):
                    break
            (ref_img, ref_msk), (img, msk) = out
            text = None
            if self.task == "rvos":
                texts = entry.expressions[obj]
                text = clean_expression(texts[int(rng.integers(len(texts)))], plans[0].flip)
            return TrainSample(f"{entry.sample_id}|obj={obj}|frames={f0},{f1}", img, msk, expression=text,
                               ref_image=ref_img, ref_mask=ref_msk[0])
        raise SampleError(
            f"video {entry.sample_id}: no object{' with an expression' if self.task == 'rvos' else ''} is visible "
            f"in two frames at most {self.sampling_range} apart (tried {self.max_tries} pairs)"
        )


def build_sample_builder(task: str, entries: Sequence, augment: AugmentConfig, *, sampling_range: int = 10):
    """The builder of ``task`` over ``entries`` (image entries become static videos for VOS/RVOS)."""
    if task == "det":
        return DetectionBuilder(entries, augment)
    if task == "ris":
        return RISBuilder(entries, augment)
    if task == "fss":
        return FSSBuilder(entries, augment)
    if task in ("vos", "rvos"):
        return VideoBuilder(_AsVideos(entries), augment, task, sampling_range)
    raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")


class _AsVideos(Sequence):
    """A lazy view turning image entries into static videos (video entries pass through)."""

    def __init__(self, entries: Sequence):
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):  # type: ignore[override]
        entry = self.entries[index]
        return static_video(entry) if isinstance(entry, ImageEntry) else entry


# ------------------------------------------------------------------------------------------ batches


@dataclass
class TrainBatch:
    """Samples of one dataset, as tensors.

    Attributes:
        dataset: the dataset name; task: its task.
        sample_ids: one per sample.
        images: per sample ``[3, H, W]`` uint8.
        masks: per sample ``[n, H, W]`` bool targets.
        input_ids, attention_mask: ``[B, T]`` int64 tokens when the batch uses language.
        ref_images: per sample ``[3, H', W']`` uint8 when the batch uses a mask reference; ref_masks ``[H', W']``.
        iteration: the sampler iteration that drew the batch.
        labels: per sample ``[n]`` int64 class ids of the targets (multi-class detection), or None (class 0).
    """

    dataset: str
    task: str
    sample_ids: list[str]
    images: list[Tensor]
    masks: list[Tensor]
    input_ids: Tensor | None = None
    attention_mask: Tensor | None = None
    ref_images: list[Tensor] | None = None
    ref_masks: list[Tensor] | None = None
    iteration: int = -1
    labels: list[Tensor] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def uses_language(self) -> bool:
        return self.input_ids is not None

    @property
    def uses_mask_reference(self) -> bool:
        return self.ref_images is not None

    def to(self, device: torch.device | str) -> "TrainBatch":
        move = lambda ts: None if ts is None else [t.to(device, non_blocking=True) for t in ts]  # noqa: E731
        return TrainBatch(
            self.dataset, self.task, list(self.sample_ids), move(self.images), move(self.masks),
            None if self.input_ids is None else self.input_ids.to(device),
            None if self.attention_mask is None else self.attention_mask.to(device),
            move(self.ref_images), move(self.ref_masks), self.iteration, move(self.labels),
        )


def collate(
    samples: Sequence[TrainSample], *, dataset: str, task: str, tokenizer=None, use_mask_reference: bool | None = None,
    context_length: int = 77, iteration: int = -1,
) -> TrainBatch:
    """Stack samples into a :class:`TrainBatch`, tokenising the expressions.

    ``use_mask_reference`` (RVOS) keeps or drops the samples' mask references for the whole batch; by default
    they are kept when present.
    """
    uses_lang = task in ("ris", "rvos")
    if use_mask_reference is None:
        use_mask_reference = task in ("fss", "vos", "rvos")
    if task in ("fss", "vos"):
        use_mask_reference = True
    if task in ("det", "ris"):
        use_mask_reference = False
    # copies: a sample's arrays may be read-only views of a cached entry, which torch must not share
    images = [torch.from_numpy(np.array(s.image.transpose(2, 0, 1), order="C")) for s in samples]
    masks = [torch.from_numpy(np.array(s.masks, order="C")) for s in samples]
    batch = TrainBatch(dataset, task, [s.sample_id for s in samples], images, masks, iteration=iteration)
    with_labels = [s.labels is not None for s in samples]
    if any(with_labels):
        if not all(with_labels):
            raise SampleError(f"dataset {dataset}: some samples have class labels and some do not")
        batch.labels = [torch.from_numpy(np.asarray(s.labels, dtype=np.int64)) for s in samples]
    if uses_lang:
        if tokenizer is None:
            raise ValueError(f"dataset {dataset}: task {task} needs a tokenizer")
        texts = [s.expression for s in samples]
        if any(t is None for t in texts):
            raise SampleError(f"dataset {dataset}: a {task} sample has no expression")
        tok = tokenize(tokenizer, texts, context_length)
        batch.input_ids, batch.attention_mask = tok.input_ids, tok.attention_mask
    if use_mask_reference:
        if any(s.ref_image is None or s.ref_mask is None for s in samples):
            raise SampleError(f"dataset {dataset}: a {task} sample has no mask reference")
        batch.ref_images = [torch.from_numpy(np.array(s.ref_image.transpose(2, 0, 1), order="C")) for s in samples]
        batch.ref_masks = [torch.from_numpy(np.array(s.ref_mask, order="C")) for s in samples]
    return batch


def concat_batches(batches: Sequence[TrainBatch]) -> TrainBatch:
    """One batch holding the samples of several batches of the same dataset and reference kinds."""
    first = batches[0]
    for b in batches[1:]:
        if (b.dataset, b.task, b.uses_language, b.uses_mask_reference) != (
            first.dataset, first.task, first.uses_language, first.uses_mask_reference
        ):
            raise ValueError("only batches of one dataset with the same reference kinds can be concatenated")
    cat = lambda name: None if getattr(first, name) is None else torch.cat([getattr(b, name) for b in batches])  # noqa: E731
    lst = lambda name: None if getattr(first, name) is None else [t for b in batches for t in getattr(b, name)]  # noqa: E731
    return TrainBatch(first.dataset, first.task, lst("sample_ids"), lst("images"), lst("masks"), cat("input_ids"),
                      cat("attention_mask"), lst("ref_images"), lst("ref_masks"), first.iteration, lst("labels"))
