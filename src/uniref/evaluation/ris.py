"""Image-level mask metrics: RIS (RefCOCO/+/g) and FSS (FSS-1000).

RIS, as the official RefCOCOeval + COCOEvaluator compute it (spec 13.1):

* ``oIoU`` (cIoU) = sum of intersections / sum of unions over the split;
* ``mIoU`` = mean of the per-entry IoU;
* ``P@t`` = percentage of entries whose IoU is **strictly greater** than ``t`` (0.5 ... 0.9).

The per-entry IoU is the exact ratio ``I / U`` in float64, which is what the official tool's reported
mIoU and P@t use (they come from ``pycocotools.mask.iou``, not from its ``(I + 1e-6) / (U + 1e-6)`` list).

**Empty ground truth and empty prediction** (``U = 0``): the official numbers never meet this case,
because every RefCOCO and FSS-1000 entry has a non-empty ground truth. When it does occur,
``pycocotools`` returns 0 (it looks at boxes first and an empty mask has no box) while the epsilon
formula of RefCOCOeval gives 1. We count it as IoU = 1 by default (``empty_iou=1.0``): correctly
predicting "nothing" is a perfect answer, it matches the convention of the J measure of DAVIS used
elsewhere in this package, and it keeps the metric from punishing correct rejections on custom data.
Pass ``empty_iou=0.0`` for pycocotools' behaviour. ``oIoU`` is unaffected (it adds 0 / 0).

FSS (spec 13.2): the paper's number is the **per-query mean foreground IoU** (the RIS mIoU above).
Most FSS papers instead report, HSNet style, the **class-wise mIoU** (per class: sum of foreground
intersections / sum of foreground unions, then the mean over classes) and the **FB-IoU** (the mean of
the foreground IoU and the background IoU, each summed over the whole dataset). Both are given too.

Both evaluators follow the reset / process / evaluate pattern and are mergeable across processes:
:meth:`state` returns plain lists (for ``torch.distributed.all_gather_object``) and :meth:`merge` adds
other states; metrics are computed only from these summed statistics.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FSSEvaluator",
    "FSSMetrics",
    "RISEvaluator",
    "RISMetrics",
    "intersection_union",
]

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _as_bool_mask(mask: Any, what: str) -> np.ndarray:
    if type(mask).__module__.startswith("torch") and hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"{what} must be an [H, W] mask; got shape {tuple(mask.shape)}")
    return mask.astype(bool) if mask.dtype != np.bool_ else mask


def intersection_union(pred: Any, gt: Any) -> tuple[int, int, int]:
    """Pixel counts of one prediction/ground-truth pair.

    Args:
        pred, gt: ``[H, W]`` masks (non-zero = foreground), numpy or torch.

    Returns:
        ``(intersection, union, number_of_pixels)``.
    """
    pred = _as_bool_mask(pred, "prediction")
    gt = _as_bool_mask(gt, "ground truth")
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction is {pred.shape[0]}x{pred.shape[1]} (HxW) but ground truth is {gt.shape[0]}x{gt.shape[1]}"
        )
    intersection = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    return intersection, union, int(gt.size)


def _entry_iou(intersection: np.ndarray, union: np.ndarray, empty_iou: float) -> np.ndarray:
    intersection = np.asarray(intersection, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    iou = np.full(union.shape, float(empty_iou), dtype=np.float64)
    nonzero = union > 0
    iou[nonzero] = intersection[nonzero] / union[nonzero]
    return iou


class _EntryStore:
    """Per-entry integer statistics, with optional ids to drop duplicates after a distributed gather."""

    fields: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._columns: dict[str, list[Any]] = {name: [] for name in self.fields}
        self._ids: list[Hashable | None] = []
        self._id_set: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def _append(self, entry_id: Hashable | None, **values: Any) -> None:
        for name in self.fields:
            self._columns[name].append(values[name])
        self._ids.append(entry_id)
        if entry_id is not None:
            self._id_set.add(entry_id)

    def state(self) -> dict[str, list[Any]]:
        """Plain-list state (picklable, JSON-able when ids are); feed it to :meth:`merge` elsewhere."""
        state = {name: list(values) for name, values in self._columns.items()}
        state["entry_id"] = list(self._ids)
        return state

    def merge(self, *states: Mapping[str, Sequence[Any]]) -> None:
        """Add the entries of other evaluators' :meth:`state`. Entries whose id was already seen are
        skipped (a distributed sampler pads the last batch with repeats)."""
        for state in states:
            missing = [name for name in (*self.fields, "entry_id") if name not in state]
            if missing:
                raise ValueError(f"evaluator state lacks {missing}")
            for row in range(len(state["entry_id"])):
                entry_id = state["entry_id"][row]
                if entry_id is not None and entry_id in self._id_set:
                    continue
                self._append(entry_id, **{name: state[name][row] for name in self.fields})

    def _check_new_id(self, entry_id: Hashable | None) -> None:
        if entry_id is not None and entry_id in self._id_set:
            raise ValueError(f"entry {entry_id!r} was already processed")

    def _order(self) -> list[int]:
        # Sorting by entry id makes the float sums independent of how entries were split across
        # processes, so N processes give bit-identical tables to one.
        rows = list(range(len(self._ids)))
        if self._ids and all(entry_id is not None for entry_id in self._ids):
            try:
                return sorted(rows, key=lambda row: (type(self._ids[row]).__name__, self._ids[row]))
            except TypeError:
                pass
        return rows

    def _array(self, name: str) -> np.ndarray:
        values = self._columns[name]
        return np.asarray([values[row] for row in self._order()], dtype=np.int64)

    def _column(self, name: str) -> list[Any]:
        values = self._columns[name]
        return [values[row] for row in self._order()]


@dataclass(frozen=True)
class RISMetrics:
    """RIS metrics, in percent.

    Attributes:
        oiou: sum of intersections / sum of unions.
        miou: mean per-entry IoU.
        precision: ``{threshold: % of entries with IoU > threshold}``.
        count: number of entries.
    """

    oiou: float
    miou: float
    precision: dict[float, float]
    count: int

    def to_dict(self) -> dict[str, float]:
        """``{"P@0.5": ..., ..., "oIoU": ..., "mIoU": ...}``, the official table's keys."""
        table = {f"P@{threshold:g}": value for threshold, value in self.precision.items()}
        table.update({"oIoU": self.oiou, "mIoU": self.miou, "count": float(self.count)})
        return table


class RISEvaluator(_EntryStore):
    """Accumulates RIS statistics; see the module docstring for the definitions.

    Example::

        evaluator = RISEvaluator()
        for pred, gt, sent_id in results:
            evaluator.process(pred, gt, entry_id=sent_id)
        metrics = evaluator.evaluate()
    """

    fields = ("intersection", "union")

    def __init__(self, thresholds: Iterable[float] = DEFAULT_THRESHOLDS, *, empty_iou: float = 1.0) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        self.empty_iou = float(empty_iou)
        super().__init__()

    def process(self, pred: Any, gt: Any, *, entry_id: Hashable | None = None) -> float:
        """Add one entry. ``pred``/``gt``: ``[H, W]`` masks of the same size. Returns its IoU (fraction)."""
        intersection, union, _ = intersection_union(pred, gt)
        return self.add_counts(intersection, union, entry_id=entry_id)

    def add_counts(self, intersection: int, union: int, *, entry_id: Hashable | None = None) -> float:
        """Add one entry from its pixel counts. Returns its IoU (fraction)."""
        if intersection < 0 or union < intersection:
            raise ValueError(f"invalid counts: intersection {intersection}, union {union}")
        self._check_new_id(entry_id)
        self._append(entry_id, intersection=int(intersection), union=int(union))
        return float(_entry_iou(np.array([intersection]), np.array([union]), self.empty_iou)[0])

    def ious(self) -> np.ndarray:
        """Per-entry IoU, ``[N]`` float64 fractions (ordered by entry id when every entry has one)."""
        return _entry_iou(self._array("intersection"), self._array("union"), self.empty_iou)

    def evaluate(self) -> RISMetrics:
        if len(self) == 0:
            raise ValueError("no entries were processed; nothing to evaluate")
        intersection, union = self._array("intersection"), self._array("union")
        ious = self.ious()
        total_union = int(union.sum())
        oiou = 100.0 * int(intersection.sum()) / total_union if total_union else 100.0 * self.empty_iou
        precision = {t: 100.0 * float(np.count_nonzero(ious > t)) / len(ious) for t in self.thresholds}
        return RISMetrics(oiou=oiou, miou=100.0 * float(np.mean(ious)), precision=precision, count=len(ious))


@dataclass(frozen=True)
class FSSMetrics:
    """FSS metrics, in percent.

    Attributes:
        miou: per-query mean foreground IoU (the number the UniRef++ paper reports).
        class_miou: HSNet-style class-wise mIoU (sum I / sum U per class, mean over classes).
        fb_iou: HSNet-style FB-IoU (mean of dataset-level foreground and background IoU).
        per_class: ``{class_id: class IoU}``.
        count: number of queries; num_classes: number of classes seen.
    """

    miou: float
    class_miou: float
    fb_iou: float
    per_class: dict[Hashable, float] = field(repr=False)
    count: int
    num_classes: int

    def to_dict(self) -> dict[str, float]:
        return {
            "mIoU": self.miou,
            "class-mIoU": self.class_miou,
            "FB-IoU": self.fb_iou,
            "count": float(self.count),
            "classes": float(self.num_classes),
        }


class FSSEvaluator(_EntryStore):
    """Accumulates FSS statistics per query: foreground intersection/union, pixel count and class."""

    fields = ("intersection", "union", "pixels", "class_id")

    def __init__(self, *, empty_iou: float = 1.0) -> None:
        self.empty_iou = float(empty_iou)
        super().__init__()

    def process(self, pred: Any, gt: Any, class_id: Hashable, *, entry_id: Hashable | None = None) -> float:
        """Add one query. ``pred``/``gt``: ``[H, W]`` masks. Returns its foreground IoU (fraction)."""
        intersection, union, pixels = intersection_union(pred, gt)
        return self.add_counts(intersection, union, pixels, class_id, entry_id=entry_id)

    def add_counts(
        self, intersection: int, union: int, pixels: int, class_id: Hashable, *, entry_id: Hashable | None = None
    ) -> float:
        if intersection < 0 or union < intersection or pixels < union:
            raise ValueError(f"invalid counts: intersection {intersection}, union {union}, pixels {pixels}")
        self._check_new_id(entry_id)
        self._append(entry_id, intersection=int(intersection), union=int(union), pixels=int(pixels), class_id=class_id)
        return float(_entry_iou(np.array([intersection]), np.array([union]), self.empty_iou)[0])

    def evaluate(self) -> FSSMetrics:
        if len(self) == 0:
            raise ValueError("no queries were processed; nothing to evaluate")
        intersection, union, pixels = self._array("intersection"), self._array("union"), self._array("pixels")
        classes = self._column("class_id")
        query_iou = _entry_iou(intersection, union, self.empty_iou)

        per_class: dict[Hashable, float] = {}
        class_order = list(dict.fromkeys(classes))
        lookup = {name: index for index, name in enumerate(class_order)}
        class_index = np.asarray([lookup[c] for c in classes], dtype=np.int64)
        class_inter = np.bincount(class_index, weights=intersection, minlength=len(class_order))
        class_union = np.bincount(class_index, weights=union, minlength=len(class_order))
        class_iou = _entry_iou(class_inter, class_union, self.empty_iou)
        for name, value in zip(class_order, class_iou.tolist()):
            per_class[name] = 100.0 * value

        # Background counts follow from the foreground ones: both-background pixels are the complement
        # of the foreground union, and the background union the complement of the foreground intersection.
        fg_iou = _entry_iou(intersection.sum(), union.sum(), self.empty_iou)
        bg_iou = _entry_iou((pixels - union).sum(), (pixels - intersection).sum(), self.empty_iou)
        return FSSMetrics(
            miou=100.0 * float(np.mean(query_iou)),
            class_miou=100.0 * float(np.mean(class_iou)),
            fb_iou=100.0 * float((fg_iou + bg_iou) / 2.0),
            per_class=per_class,
            count=len(query_iou),
            num_classes=len(class_order),
        )
