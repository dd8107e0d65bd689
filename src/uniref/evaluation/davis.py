"""J, F and J&F for video object segmentation, numerically the DAVIS-2017 evaluation.

Definitions (``davis2017-evaluation``, which the official UniRef++ scores DAVIS17, LVOS and Ref-DAVIS17
with; spec 13.3-13.5):

* **J** = region IoU of one object in one frame; both masks empty -> 1.
* **F** = boundary F-measure. Boundaries are 1-pixel maps from ``seg2bmap`` (a pixel is on the boundary
  when it differs from its east, south or south-east neighbour; the last row compares east only, the
  last column south only, the bottom-right pixel never). A boundary pixel is matched when a boundary
  pixel of the other mask lies within a disk of radius ``ceil(0.008 * image diagonal)``;
  precision = matched predicted / predicted, recall = matched true / true,
  F = 2PR / (P + R). Empty predicted boundary and non-empty true one: P = 1, R = 0; the reverse: P = 0,
  R = 1; both empty: F = 1.
* Per object over the evaluated frames: **mean**, **recall** (share of frames with a value > 0.5) and
  **decay** (mean of the first quarter of frames minus mean of the last, with the official bin edges).
* Global: J-Mean = mean over all objects of all sequences of the per-object mean; J&F = (J-Mean + F-Mean)/2.

Protocols for semi-supervised VOS (``task="semi-supervised"``; the first and last frames are skipped):

* ``"davis2017"`` (default): objects are ids ``1..max id of the first ground-truth frame`` (255 is void
  and counts as background), each scored over **every** evaluated frame; a predicted id above that is an
  error, as in the official tool.
* ``"first_appearance"``: the rule of ``vos-benchmark`` (used for sets where objects start late): an
  object is scored from the first evaluated frame where it appears in the ground truth or the
  prediction; the objects reported are the ids that appear in the evaluated ground-truth frames.

The two agree whenever every object is visible in the ground truth of the first evaluated frame.

``task="unsupervised"`` (Ref-DAVIS17, spec 13.4): every frame is scored, void pixels (255) are
ignored, and the predicted objects (at most 20) are matched to the ground-truth objects of each sequence
by the Hungarian algorithm on their mean J&F (:func:`scipy.optimize.linear_sum_assignment`).

Implementation: one joint histogram per frame gives every intersection and area at once; boundaries of
all objects come from one pass over the label map; boundary matching counts points within the radius
by binary searches over the (few) boundary pixels instead of dilating whole images. All values are
fractions (0..1) per frame and percent in the tables.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy.optimize import linear_sum_assignment

__all__ = [
    "BOUNDARY_THRESHOLD",
    "MAX_PROPOSALS",
    "ObjectScores",
    "VOSResult",
    "boundary_f_measure",
    "boundary_radius",
    "db_statistics",
    "evaluate_folder",
    "evaluate_sequence",
    "frame_scores",
    "jaccard",
    "mean_over_splits",
    "merge_results",
    "seg2bmap",
]

BOUNDARY_THRESHOLD = 0.008
MAX_PROPOSALS = 20
VOID_ID = 255

Task = Literal["semi-supervised", "unsupervised"]
Protocol = Literal["davis2017", "first_appearance"]
LabelFrame = np.ndarray | str | os.PathLike


# --------------------------------------------------------------------------------------------------
# Per-frame measures
# --------------------------------------------------------------------------------------------------


def boundary_radius(height: int, width: int, bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Radius in pixels of the matching disk: ``bound_th`` pixels if ``bound_th >= 1``, else
    ``ceil(bound_th * diagonal)`` (computed as the official ``np.linalg.norm(shape)``)."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"a boundary threshold >= 1 is a pixel radius and must be an integer, got {bound_th}")
        return int(bound_th)
    diagonal = np.sqrt(float(height) * float(height) + float(width) * float(width))
    return int(np.ceil(bound_th * diagonal))


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a binary mask (the DAVIS ``seg2bmap`` rule, see the module docstring).

    Args:
        mask: ``[H, W]``, non-zero = object.

    Returns:
        ``[H, W]`` bool.
    """
    labels = (np.asarray(mask) != 0).astype(np.uint8)
    height, width = labels.shape
    points = _boundary_points(labels, _keep([1]))
    out = np.zeros(height * width, dtype=bool)
    out[points.get(1, np.zeros(0, np.int64))] = True
    return out.reshape(height, width)


def _keep(ids: Iterable[int]) -> np.ndarray:
    keep = np.zeros(256, dtype=bool)
    keep[[int(i) for i in ids]] = True
    keep[0] = False
    return keep


def _boundary_points(labels: np.ndarray, keep: np.ndarray) -> dict[int, np.ndarray]:
    """Boundary pixels of every kept id of a label map, in one pass.

    A pixel ``p`` is on the boundary of object ``k`` when, for one of its compared neighbours ``q``
    (east, south, south-east, restricted as ``seg2bmap`` does at the last row/column),
    ``[labels[p] == k] != [labels[q] == k]``, i.e. ``labels[p] != labels[q]`` and ``k`` is one of the two.

    Returns:
        ``{id: sorted flat pixel indices}`` for the kept ids that have a boundary.
    """
    height, width = labels.shape
    area = height * width
    flat = np.ascontiguousarray(labels).reshape(-1)
    # First a cheap pass over the flat array finds candidate pixels (it also flags comparisons that wrap
    # from one row to the next; those are filtered below on the few candidates only).
    differs = np.zeros(area, dtype=bool)
    for step in (1, width, width + 1):  # east, south, south-east
        if step < area:
            differs[: area - step] |= flat[: area - step] != flat[step:]
    candidates = np.flatnonzero(differs)
    keys = []
    if candidates.size:
        ys, xs = np.divmod(candidates, width)
        here = flat[candidates].astype(np.int64)
        for step, valid in (
            (1, xs < width - 1),  # east: every row, all but the last column
            (width, ys < height - 1),  # south: all but the last row, every column
            (width + 1, (xs < width - 1) & (ys < height - 1)),  # south-east: interior only
        ):
            pixels = candidates[valid]
            if pixels.size == 0:
                continue
            mine = here[valid]
            theirs = flat[pixels + step].astype(np.int64)
            different = mine != theirs
            pixels, mine, theirs = pixels[different], mine[different], theirs[different]
            for owner in (mine, theirs):
                selected = keep[owner]
                keys.append(owner[selected] * area + pixels[selected])
    if not keys:
        return {}
    unique = np.unique(np.concatenate(keys))
    owners = unique // area
    pixels = unique - owners * area
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    ends = np.r_[starts[1:], owners.size]
    return {int(owners[s]): pixels[s:e] for s, e in zip(starts, ends)}


def _disk_half_widths(radius: int, offsets: Sequence[int]) -> np.ndarray:
    # Row dy of the disk {dx^2 + dy^2 <= r^2} spans |dx| <= isqrt(r^2 - dy^2): exact in integers.
    return np.asarray([math.isqrt(radius * radius - dy * dy) for dy in offsets], dtype=np.int64)


def _count_matched(points: np.ndarray, other: np.ndarray, width: int, radius: int) -> int:
    """How many of ``points`` have a pixel of ``other`` within Euclidean distance ``radius``.

    This is what dilating ``other`` by a disk and counting the hits does, without touching the image:
    both arguments are sorted flat pixel indices, so the pixels of ``other`` on one image row within
    ``[x - w, x + w]`` form one contiguous index range, found by binary search. Each point tests the
    ``2 r + 1`` rows of the disk; the rows nearest to it go first, so most points stop early.
    Rows outside the image give ranges that hold no pixel, so they need no clipping.
    """
    position = np.minimum(np.searchsorted(other, points), other.size - 1)
    shared = other[position] == points  # distance 0
    matched = int(np.count_nonzero(shared))
    rest = points[~shared]
    if rest.size == 0:
        return matched
    ys, xs = np.divmod(rest, width)
    offsets = sorted(range(-radius, radius + 1), key=abs)
    for chunk in (offsets[:3], offsets[3:]):
        if ys.size == 0 or not chunk:
            break
        dy = np.asarray(chunk, dtype=np.int64)
        half = _disk_half_widths(radius, chunk)
        rows = (ys[:, None] + dy[None, :]) * width
        low = rows + np.maximum(xs[:, None] - half, 0)
        high = rows + np.minimum(xs[:, None] + half, width - 1)
        hit = (np.searchsorted(other, high, side="right") > np.searchsorted(other, low, side="left")).any(axis=1)
        matched += int(np.count_nonzero(hit))
        ys, xs = ys[~hit], xs[~hit]
    return matched


def _f_from_points(pred_points: np.ndarray, gt_points: np.ndarray, width: int, radius: int) -> float:
    n_fg, n_gt = pred_points.size, gt_points.size
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_fg == n_gt and np.array_equal(pred_points, gt_points):
        precision, recall = 1.0, 1.0
    else:
        precision = _count_matched(pred_points, gt_points, width, radius) / float(n_fg)
        recall = _count_matched(gt_points, pred_points, width, radius) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def boundary_f_measure(
    pred: np.ndarray, gt: np.ndarray, *, void: np.ndarray | None = None, bound_th: float = BOUNDARY_THRESHOLD
) -> float:
    """F of one object in one frame. ``pred``/``gt``/``void``: ``[H, W]`` masks (non-zero = set)."""
    pred = np.asarray(pred) != 0
    gt = np.asarray(gt) != 0
    _check_same_shape(pred, gt)
    if void is not None:
        keep_pixels = np.asarray(void) == 0
        pred, gt = pred & keep_pixels, gt & keep_pixels
    height, width = gt.shape
    radius = boundary_radius(height, width, bound_th)
    pred_points = _boundary_points(pred.astype(np.uint8), _keep([1])).get(1, np.zeros(0, np.int64))
    gt_points = _boundary_points(gt.astype(np.uint8), _keep([1])).get(1, np.zeros(0, np.int64))
    return _f_from_points(pred_points, gt_points, width, radius)


def jaccard(pred: np.ndarray, gt: np.ndarray, *, void: np.ndarray | None = None) -> float:
    """J (region IoU) of one object in one frame; 1 when both are empty (outside ``void``)."""
    pred = np.asarray(pred) != 0
    gt = np.asarray(gt) != 0
    _check_same_shape(pred, gt)
    if void is not None:
        keep_pixels = np.asarray(void) == 0
        pred, gt = pred & keep_pixels, gt & keep_pixels
    union = int(np.count_nonzero(pred | gt))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pred & gt)) / union


def _check_same_shape(pred: np.ndarray, gt: np.ndarray, pred_name: str = "prediction", gt_name: str = "ground truth"):
    if pred.shape != gt.shape:
        raise ValueError(
            f"{pred_name} is {'x'.join(map(str, pred.shape))} (HxW) but {gt_name} is "
            f"{'x'.join(map(str, gt.shape))}"
        )


def frame_scores(
    gt: np.ndarray,
    pred: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    *,
    bound_th: float = BOUNDARY_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of several (ground-truth id, predicted id) pairs in one frame.

    Args:
        gt, pred: ``[H, W]`` integer label maps (0 = background; void must already be cleared).
        pairs: ``(gt_id, pred_id)`` pairs to score.

    Returns:
        ``(j, f)``, each ``[len(pairs)]`` float64 fractions.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    _check_same_shape(pred, gt)
    for labels, what in ((gt, "ground truth"), (pred, "prediction")):
        if labels.dtype != np.uint8 and labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"{what}: palette ids out of range ({labels.min()}..{labels.max()}), allowed 0..255")
    height, width = gt.shape
    radius = boundary_radius(height, width, bound_th)
    gt8, pred8 = gt.astype(np.uint8, copy=False), pred.astype(np.uint8, copy=False)
    joint = np.bincount((gt8.astype(np.uint16) << 8 | pred8).ravel(), minlength=65536).reshape(256, 256)
    gt_area, pred_area = joint.sum(axis=1), joint.sum(axis=0)
    gt_ids = {g for g, _ in pairs if g}
    pred_ids = {p for _, p in pairs if p}
    gt_points = _boundary_points(gt8, _keep(gt_ids)) if gt_ids else {}
    pred_points = _boundary_points(pred8, _keep(pred_ids)) if pred_ids else {}
    empty = np.zeros(0, dtype=np.int64)
    j = np.empty(len(pairs), dtype=np.float64)
    f = np.empty(len(pairs), dtype=np.float64)
    for row, (g, p) in enumerate(pairs):
        intersection = int(joint[g, p]) if g and p else 0
        union = (int(gt_area[g]) if g else 0) + (int(pred_area[p]) if p else 0) - intersection
        j[row] = 1.0 if union == 0 else intersection / union
        f[row] = _f_from_points(pred_points.get(p, empty), gt_points.get(g, empty), width, radius)
    return j, f


# --------------------------------------------------------------------------------------------------
# Statistics and result tables
# --------------------------------------------------------------------------------------------------


def db_statistics(values: np.ndarray, *, official_bins: bool = True) -> tuple[float, float, float]:
    """Mean, recall (share > 0.5) and decay of one object's per-frame values.

    Args:
        values: ``[T]`` per-frame values (fractions).
        official_bins: compute the four decay bins as the official tools do, whose bin edges are cast to
            uint8 and so wrap around for sequences of more than 256 evaluated frames (LVOS). ``False``
            uses correct edges; the two agree up to 256 frames.

    Returns:
        ``(mean, recall, decay)`` as fractions (NaN for an empty sequence).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        edges = np.round(np.linspace(1, len(values), 5) + 1e-10) - 1
        edges = edges.astype(np.uint8) if official_bins else edges.astype(np.int64)
        bins = [values[edges[i] : edges[i + 1] + 1] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


@dataclass
class ObjectScores:
    """Per-frame J and F of one object of one sequence.

    Attributes:
        sequence: sequence name.
        object_id: ground-truth object id.
        j, f: ``[T]`` float64 fractions, one per evaluated frame.
        frames: names of the evaluated frames (same length as ``j``).
        proposal_id: the predicted id matched to this object (unsupervised task), else the object id.
    """

    sequence: str
    object_id: int
    j: np.ndarray
    f: np.ndarray
    frames: list[str] = field(default_factory=list)
    proposal_id: int | None = None

    @property
    def name(self) -> str:
        """``sequence_id``, as the official per-object table names it."""
        return f"{self.sequence}_{self.object_id}"

    def statistics(self, *, official_bins: bool = True) -> dict[str, float]:
        """``J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay, J&F-Mean`` as fractions."""
        jm, jr, jd = db_statistics(self.j, official_bins=official_bins)
        fm, fr, fd = db_statistics(self.f, official_bins=official_bins)
        return {
            "J&F-Mean": (jm + fm) / 2,
            "J-Mean": jm,
            "J-Recall": jr,
            "J-Decay": jd,
            "F-Mean": fm,
            "F-Recall": fr,
            "F-Decay": fd,
        }


GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


@dataclass
class VOSResult:
    """Scores of a set of sequences.

    Attributes:
        objects: one :class:`ObjectScores` per evaluated object, sorted by sequence then id.
        task, protocol: how they were computed.
        official_bins: decay bin rule (see :func:`db_statistics`).
    """

    objects: list[ObjectScores]
    task: str = "semi-supervised"
    protocol: str = "davis2017"
    official_bins: bool = True

    @property
    def sequences(self) -> list[str]:
        return list(dict.fromkeys(obj.sequence for obj in self.objects))

    def global_table(self) -> dict[str, float]:
        """The official global row, in percent: J&F-Mean, J-Mean/Recall/Decay, F-Mean/Recall/Decay."""
        if not self.objects:
            return {name: float("nan") for name in GLOBAL_COLUMNS}
        stats = [obj.statistics(official_bins=self.official_bins) for obj in self.objects]
        table = {name: 100.0 * float(np.mean([s[name] for s in stats])) for name in GLOBAL_COLUMNS[1:]}
        # J&F is the mean of the two means, not the mean of per-object J&F (they differ in rounding only).
        table = {"J&F-Mean": (table["J-Mean"] + table["F-Mean"]) / 2, **table}
        return table

    def object_table(self) -> list[dict[str, Any]]:
        """One row per object (the official per-sequence table): names and J/F/J&F means in percent."""
        rows = []
        for obj in self.objects:
            stats = obj.statistics(official_bins=self.official_bins)
            rows.append(
                {
                    "Sequence": obj.name,
                    "Object": obj.object_id,
                    "J&F-Mean": 100.0 * stats["J&F-Mean"],
                    "J-Mean": 100.0 * stats["J-Mean"],
                    "F-Mean": 100.0 * stats["F-Mean"],
                    "Frames": int(obj.j.size),
                }
            )
        return rows

    def sequence_table(self) -> list[dict[str, Any]]:
        """One row per sequence: means over its objects, in percent."""
        rows = []
        for name in self.sequences:
            objects = [obj for obj in self.objects if obj.sequence == name]
            stats = [obj.statistics(official_bins=self.official_bins) for obj in objects]
            j_mean = 100.0 * float(np.mean([s["J-Mean"] for s in stats]))
            f_mean = 100.0 * float(np.mean([s["F-Mean"] for s in stats]))
            rows.append(
                {"Sequence": name, "J&F-Mean": (j_mean + f_mean) / 2, "J-Mean": j_mean, "F-Mean": f_mean,
                 "Objects": len(objects)}
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: task, protocol, global table, per-sequence and per-object tables."""
        return {
            "task": self.task,
            "protocol": self.protocol,
            "global": self.global_table(),
            "sequences": self.sequence_table(),
            "objects": self.object_table(),
        }

    def to_csv(self) -> str:
        """The global row and the per-object rows as CSV text (percent, 3 decimals)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(GLOBAL_COLUMNS)
        writer.writerow([f"{v:.3f}" for v in self.global_table().values()])
        writer.writerow([])
        writer.writerow(["Sequence", "J&F-Mean", "J-Mean", "F-Mean", "Frames"])
        for row in self.object_table():
            writer.writerow([row["Sequence"], f"{row['J&F-Mean']:.3f}", f"{row['J-Mean']:.3f}",
                             f"{row['F-Mean']:.3f}", row["Frames"]])
        return buffer.getvalue()

    def save(self, out_dir: str | os.PathLike, *, stem: str = "results", overwrite: bool = False) -> list[Path]:
        """Write ``<stem>.json`` and ``<stem>.csv`` into ``out_dir`` atomically. Returns the paths."""
        from ..io.atomic import atomic_write_text, ensure_writable_dir

        folder = ensure_writable_dir(out_dir)
        json_path = atomic_write_text(folder / f"{stem}.json", json.dumps(self.to_dict(), indent=2), overwrite=overwrite)
        csv_path = atomic_write_text(folder / f"{stem}.csv", self.to_csv(), overwrite=overwrite)
        return [json_path, csv_path]


def merge_results(results: Iterable[VOSResult]) -> VOSResult:
    """Combine results computed on disjoint sequence sets (e.g. by several processes).

    Raises:
        ValueError: the same (sequence, object) appears twice, or the settings differ.
    """
    results = list(results)
    if not results:
        raise ValueError("no results to merge")
    first = results[0]
    objects: dict[tuple[str, int], ObjectScores] = {}
    for result in results:
        if (result.task, result.protocol, result.official_bins) != (first.task, first.protocol, first.official_bins):
            raise ValueError("cannot merge results computed with different task/protocol/decay settings")
        for obj in result.objects:
            key = (obj.sequence, obj.object_id)
            if key in objects:
                raise ValueError(f"object {obj.object_id} of sequence {obj.sequence!r} is in more than one result")
            objects[key] = obj
    ordered = [objects[key] for key in sorted(objects)]
    return VOSResult(ordered, task=first.task, protocol=first.protocol, official_bins=first.official_bins)


def mean_over_splits(results: Sequence[VOSResult | Mapping[str, float]]) -> dict[str, float]:
    """Mean of the global tables of several runs (Ref-DAVIS17: the four annotator splits).

    Each column is averaged separately, as the paper's numbers were (by hand) averaged over the splits.
    """
    if not results:
        raise ValueError("no results to average")
    tables = [r.global_table() if isinstance(r, VOSResult) else dict(r) for r in results]
    return {name: float(np.mean([t[name] for t in tables])) for name in tables[0]}


# --------------------------------------------------------------------------------------------------
# Sequences
# --------------------------------------------------------------------------------------------------


def _read_labels(frame: LabelFrame, what: str) -> np.ndarray:
    """An ``[H, W]`` label map from an array or a palette/greyscale PNG (values are the ids)."""
    if isinstance(frame, (str, os.PathLike)):
        path = Path(frame)
        if not path.exists():
            raise FileNotFoundError(f"{what} not found: {path}")
        try:
            with Image.open(path) as image:
                if image.mode in ("P", "L"):
                    return np.array(image, dtype=np.uint8)
        except UnidentifiedImageError as error:
            raise ValueError(f"{what} is not a readable PNG: {path}") from error
        except OSError as error:
            raise ValueError(f"{what} is corrupt or truncated: {path} ({error})") from error
        from ..io.masks import load_label_map

        return load_label_map(path)
    labels = np.asarray(frame)
    if labels.ndim != 2:
        raise ValueError(f"{what} must be an [H, W] label map; got shape {tuple(labels.shape)}")
    if labels.dtype == np.bool_:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must hold integer ids; got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"{what}: palette ids out of range ({labels.min()}..{labels.max()}), allowed 0..255")
    return labels.astype(np.uint8, copy=True)


def _frame_label(frames: Sequence[LabelFrame], index: int, names: Sequence[str] | None, kind: str) -> str:
    item = frames[index]
    if isinstance(item, (str, os.PathLike)):
        return f"{kind} {item}"
    name = names[index] if names is not None else str(index)
    return f"{kind} frame {name}"


def evaluate_sequence(
    gt_frames: Sequence[LabelFrame],
    pred_frames: Sequence[LabelFrame],
    *,
    name: str = "sequence",
    frame_names: Sequence[str] | None = None,
    task: Task = "semi-supervised",
    protocol: Protocol = "davis2017",
    skip_first_last: bool | None = None,
    bound_th: float = BOUNDARY_THRESHOLD,
    max_proposals: int = MAX_PROPOSALS,
) -> list[ObjectScores]:
    """Score one sequence.

    Args:
        gt_frames, pred_frames: one ``[H, W]`` label map (array or PNG path) per frame, same length;
            paths are read lazily, and the prediction of a skipped frame is never read.
        name: the sequence name used in results and messages.
        frame_names: names of the frames (default: the file stems, or the indices).
        task: ``"semi-supervised"`` (DAVIS17, LVOS, MOSE...) or ``"unsupervised"`` (Ref-DAVIS17).
        protocol: object rule of the semi-supervised task (see the module docstring).
        skip_first_last: default True for the semi-supervised task, False for the unsupervised one.
        bound_th: F boundary threshold (fraction of the diagonal, or pixels if >= 1).
        max_proposals: unsupervised task: the most predicted objects allowed.

    Returns:
        One :class:`ObjectScores` per ground-truth object, sorted by id.

    Raises:
        FileNotFoundError: a missing prediction file (named). ValueError: sizes that differ (both named),
        predicted ids the ground truth does not have (davis2017 protocol), too many proposals.
    """
    if len(gt_frames) != len(pred_frames):
        raise ValueError(
            f"sequence {name!r}: {len(gt_frames)} ground-truth frames but {len(pred_frames)} predicted frames"
        )
    if task not in ("semi-supervised", "unsupervised"):
        raise ValueError(f"unknown task {task!r}; use 'semi-supervised' or 'unsupervised'")
    if protocol not in ("davis2017", "first_appearance"):
        raise ValueError(f"unknown protocol {protocol!r}; use 'davis2017' or 'first_appearance'")
    if frame_names is None:
        frame_names = [
            Path(f).stem if isinstance(f, (str, os.PathLike)) else f"{i:05d}" for i, f in enumerate(gt_frames)
        ]
    if skip_first_last is None:
        skip_first_last = task == "semi-supervised"
    count = len(gt_frames)
    evaluated = list(range(1, count - 1)) if skip_first_last else list(range(count))

    def load_pair(index: int) -> tuple[np.ndarray, np.ndarray]:
        gt = _read_labels(gt_frames[index], _frame_label(gt_frames, index, frame_names, f"{name}: ground truth"))
        pred = _read_labels(pred_frames[index], _frame_label(pred_frames, index, frame_names, f"{name}: prediction"))
        _check_same_shape(
            pred, gt,
            _frame_label(pred_frames, index, frame_names, f"{name}: prediction"),
            _frame_label(gt_frames, index, frame_names, "ground truth"),
        )
        return gt, pred

    if task == "unsupervised":
        return _evaluate_unsupervised(gt_frames, evaluated, load_pair, name, frame_names, bound_th, max_proposals)
    if protocol == "davis2017":
        return _evaluate_davis2017(gt_frames, pred_frames, evaluated, load_pair, name, frame_names, bound_th)
    return _evaluate_first_appearance(evaluated, load_pair, name, frame_names, bound_th)


def _first_frame_objects(gt_frames: Sequence[LabelFrame], name: str, frame_names: Sequence[str]) -> int:
    first = _read_labels(gt_frames[0], _frame_label(gt_frames, 0, frame_names, f"{name}: ground truth"))
    first = np.where(first == VOID_ID, 0, first)
    return int(first.max()) if first.size else 0


def _evaluate_davis2017(gt_frames, pred_frames, evaluated, load_pair, name, frame_names, bound_th):
    num_objects = _first_frame_objects(gt_frames, name, frame_names)
    ids = list(range(1, num_objects + 1))
    pairs = [(k, k) for k in ids]
    j = np.zeros((num_objects, len(evaluated)))
    f = np.zeros((num_objects, len(evaluated)))
    for column, index in enumerate(evaluated):
        gt, pred = load_pair(index)
        gt[gt == VOID_ID] = 0
        top = int(pred.max()) if pred.size else 0
        if top > num_objects:
            raise ValueError(
                f"{_frame_label(pred_frames, index, frame_names, f'{name}: prediction')} holds object id {top}, "
                f"but the first ground-truth frame of {name!r} has {num_objects} object(s)"
            )
        if pairs:
            j[:, column], f[:, column] = frame_scores(gt, pred, pairs, bound_th=bound_th)
    names = [frame_names[i] for i in evaluated]
    return [ObjectScores(name, k, j[row], f[row], list(names), k) for row, k in enumerate(ids)]


def _evaluate_first_appearance(evaluated, load_pair, name, frame_names, bound_th):
    in_gt: set[int] = set()
    seen: dict[int, int] = {}  # object id -> column of its first appearance (gt or prediction)
    j_values: dict[int, list[float]] = {}
    f_values: dict[int, list[float]] = {}
    for column, index in enumerate(evaluated):
        gt, pred = load_pair(index)
        gt_ids = set(np.flatnonzero(np.bincount(gt.ravel(), minlength=256)).tolist()) - {0}
        pred_ids = set(np.flatnonzero(np.bincount(pred.ravel(), minlength=256)).tolist()) - {0}
        in_gt |= gt_ids
        for obj in sorted(gt_ids | pred_ids):
            seen.setdefault(obj, column)
        ids = sorted(seen)
        if not ids:
            continue
        j, f = frame_scores(gt, pred, [(k, k) for k in ids], bound_th=bound_th)
        for row, obj in enumerate(ids):
            j_values.setdefault(obj, []).append(float(j[row]))
            f_values.setdefault(obj, []).append(float(f[row]))
    names = [frame_names[i] for i in evaluated]
    return [
        ObjectScores(name, k, np.asarray(j_values[k]), np.asarray(f_values[k]), names[seen[k]:], k)
        for k in sorted(in_gt)
    ]


def _evaluate_unsupervised(gt_frames, evaluated, load_pair, name, frame_names, bound_th, max_proposals):
    num_objects = _first_frame_objects(gt_frames, name, frame_names)
    if num_objects == 0:
        return []
    proposals = np.arange(1, max_proposals + 1)
    j = np.zeros((max_proposals, num_objects, len(evaluated)))
    f = np.zeros((max_proposals, num_objects, len(evaluated)))
    most = 0
    for column, index in enumerate(evaluated):
        gt, pred = load_pair(index)
        void = gt == VOID_ID
        gt[void] = 0
        pred[void] = 0  # void pixels are ignored in both J and F
        gt[gt > num_objects] = 0  # only the first frame's objects are ground truth
        top = int(pred.max()) if pred.size else 0
        if top > max_proposals:
            raise ValueError(
                f"{name!r} frame {frame_names[index]}: predicted id {top} exceeds the {max_proposals} proposals allowed"
            )
        most = max(most, top)
        pairs = [(int(g), int(p)) for p in proposals for g in range(1, num_objects + 1)]
        pair_j, pair_f = frame_scores(gt, pred, pairs, bound_th=bound_th)
        j[:, :, column] = pair_j.reshape(max_proposals, num_objects)
        f[:, :, column] = pair_f.reshape(max_proposals, num_objects)
    # As the official tool: the proposal set is 1..max predicted id, padded with empty ones up to the
    # number of ground-truth objects.
    rows = max(most, num_objects)
    j, f = j[:rows], f[:rows]
    score = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    row_ind, col_ind = linear_sum_assignment(-score)
    names = [frame_names[i] for i in evaluated]
    matched = sorted(zip(col_ind.tolist(), row_ind.tolist()))
    return [ObjectScores(name, g + 1, j[p, g].copy(), f[p, g].copy(), list(names), p + 1) for g, p in matched]


# --------------------------------------------------------------------------------------------------
# Folders (DAVIS layout: <root>/<sequence>/<frame>.png)
# --------------------------------------------------------------------------------------------------


def _sequence_job(job: tuple[str, list[str], list[str], dict[str, Any]]) -> list[ObjectScores]:
    name, gt_files, pred_files, options = job
    return evaluate_sequence(gt_files, pred_files, name=name, **options)


def evaluate_folder(
    gt_root: str | os.PathLike,
    pred_root: str | os.PathLike,
    *,
    sequences: Sequence[str] | None = None,
    task: Task = "semi-supervised",
    protocol: Protocol = "davis2017",
    skip_first_last: bool | None = None,
    bound_th: float = BOUNDARY_THRESHOLD,
    max_proposals: int = MAX_PROPOSALS,
    processes: int = 1,
    official_bins: bool = True,
    progress: Callable[[str], None] | None = None,
) -> VOSResult:
    """Score a prediction folder against a ground-truth folder, both ``<root>/<sequence>/<frame>.png``.

    Frames are the ground truth's PNGs in sorted order (as the official tool); each must have a
    prediction with the same file name (the skipped first/last ones excepted).

    Args:
        gt_root: e.g. ``DAVIS/Annotations/480p``.
        pred_root: the prediction folder.
        sequences: sequence names (e.g. from ``ImageSets/2017/val.txt``); default: every ground-truth
            sub-folder.
        processes: worker processes over sequences (1 = in this process).
        progress: called with each sequence name when it is done.
        Other arguments: see :func:`evaluate_sequence`.

    Raises:
        FileNotFoundError: a missing folder or prediction file, named.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    for root, what in ((gt_root, "ground-truth folder"), (pred_root, "prediction folder")):
        if not root.is_dir():
            raise FileNotFoundError(f"{what} not found: {root}")
    if sequences is None:
        sequences = sorted(entry.name for entry in gt_root.iterdir() if entry.is_dir())
        if not sequences:
            raise FileNotFoundError(f"no sequence folders in {gt_root}")
    options = {
        "task": task,
        "protocol": protocol,
        "skip_first_last": skip_first_last,
        "bound_th": bound_th,
        "max_proposals": max_proposals,
    }
    jobs = []
    for sequence in sequences:
        gt_dir, pred_dir = gt_root / sequence, pred_root / sequence
        if not gt_dir.is_dir():
            raise FileNotFoundError(f"ground truth of sequence {sequence!r} not found: {gt_dir}")
        if not pred_dir.is_dir():
            raise FileNotFoundError(f"prediction of sequence {sequence!r} not found: {pred_dir}")
        gt_files = sorted(str(p) for p in gt_dir.glob("*.png"))
        if not gt_files:
            raise FileNotFoundError(f"no ground-truth PNGs in {gt_dir}")
        pred_files = [str(pred_dir / Path(p).name) for p in gt_files]
        jobs.append((sequence, gt_files, pred_files, options))

    objects: list[ObjectScores] = []
    if processes <= 1 or len(jobs) <= 1:
        for job in jobs:
            objects.extend(_sequence_job(job))
            if progress is not None:
                progress(job[0])
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            for job, result in zip(jobs, pool.map(_sequence_job, jobs)):
                objects.extend(result)
                if progress is not None:
                    progress(job[0])
    return VOSResult(objects, task=task, protocol=protocol, official_bins=official_bins)
