"""Scoring written predictions against ground truth, one share of entries or videos at a time.

Every function here reads files only (no model), so ``uniref eval`` and ``uniref score`` share it, and
every rank of a distributed run can score its own share; the shares' results are merged with
:func:`merge_entry_states` / :func:`merge_video_scores`, which order everything by id so that any
number of processes gives bit-identical numbers.

Bad input is reported naming the file: a prediction file without an entry the split has, a
prediction folder without a video, an expression or a frame, a frame without its annotation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uniref.data.datasets import DatasetReader, ImageSample, VideoSample
from uniref.evaluation.benchmarks import Benchmark
from uniref.evaluation.davis import ObjectScores, VOSResult, evaluate_sequence, frame_scores, merge_results
from uniref.evaluation.layouts import video_frames
from uniref.evaluation.ris import FSSEvaluator, RISEvaluator
from uniref.io.masks import load_binary_mask, read_png_indices
from uniref.io.rle import decode_rle

__all__ = [
    "check_ground_truth",
    "merge_entry_states",
    "merge_video_scores",
    "score_entries",
    "score_video",
]


# --------------------------------------------------------------------------------------------------
# RIS / FSS
# --------------------------------------------------------------------------------------------------


def _predicted_mask(record: Mapping[str, Any], source: Path) -> np.ndarray:
    segmentation = record.get("segmentation")
    if not isinstance(segmentation, Mapping):
        raise ValueError(f"{source}: entry {record['id']!r} has no 'segmentation' RLE")
    try:
        mask = decode_rle(segmentation)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{source}: entry {record['id']!r} has an unreadable RLE ({error})") from error
    if record.get("box_empty"):
        # The official post-processing drops a prediction whose box is empty after clipping (spec 9.1).
        mask = np.zeros_like(mask)
    return mask


def score_entries(
    bench: Benchmark,
    samples: Iterable[ImageSample],
    records: Mapping[str, Mapping[str, Any]],
    source: Path,
) -> dict[str, list[Any]]:
    """Score RIS/FSS entries; returns the evaluator's mergeable state.

    Args:
        samples: the entries to score (this rank's share).
        records: ``{entry id: prediction record}`` read from ``source``.

    Raises:
        ValueError: an entry the split has is missing from ``source`` or has another size.
    """
    evaluator: RISEvaluator | FSSEvaluator = FSSEvaluator() if bench.task == "fss" else RISEvaluator()
    for sample in samples:
        record = records.get(sample.sample_id)
        if record is None:
            raise ValueError(f"{source} has no prediction for entry {sample.sample_id!r} of the split")
        pred = _predicted_mask(record, source)
        gt = sample.load_mask()
        if pred.shape != gt.shape:
            raise ValueError(
                f"{source}: prediction of entry {sample.sample_id!r} is {pred.shape[0]}x{pred.shape[1]} (HxW) "
                f"but its ground truth ({sample.image_path.name}) is {gt.shape[0]}x{gt.shape[1]}")
        if isinstance(evaluator, FSSEvaluator):
            evaluator.process(pred, gt, sample.info.get("class_name"), entry_id=sample.sample_id)
        else:
            evaluator.process(pred, gt, entry_id=sample.sample_id)
    return evaluator.state()


def merge_entry_states(bench: Benchmark, states: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], dict]:
    """Metrics row (percent) and details of the merged states of every rank."""
    if bench.task == "fss":
        fss = FSSEvaluator()
        fss.merge(*states)
        metrics = fss.evaluate()
        row = metrics.to_dict()
        per_class = {str(k): v for k, v in metrics.per_class.items()}
        return _integers(row, ("count", "classes")), {"per_class_iou": per_class}
    ris = RISEvaluator()
    ris.merge(*states)
    return _integers(ris.evaluate().to_dict(), ("count",)), {}


def _integers(row: dict[str, float], keys: Sequence[str]) -> dict[str, Any]:
    return {k: int(v) if k in keys else v for k, v in row.items()}


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------


def _annotation_file(gt_reader: DatasetReader, video: str, frame: str) -> Path:
    folder = getattr(gt_reader, "annotations_dir", None)
    return Path(folder) / video / f"{frame}.png" if folder is not None else Path(video) / f"{frame}.png"


def _ground_truth_paths(sample: VideoSample, gt_sample: VideoSample, frames: Sequence[int],
                        gt_reader: DatasetReader) -> list[Path]:
    by_name = {gt_sample.frame_names[i]: path for i, path in gt_sample.annotation_paths.items()}
    paths = []
    for index in frames:
        name = sample.frame_names[index]
        if name not in by_name:
            raise FileNotFoundError(
                f"frame {name} of video {sample.name!r} has no ground-truth annotation: "
                f"{_annotation_file(gt_reader, sample.name, name)}")
        paths.append(by_name[name])
    return paths


def _prediction_paths(folder: Path, names: Sequence[str], video: str, what: str = "video") -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"prediction folder of {what} {video!r} not found: {folder}")
    paths = [folder / f"{name}.png" for name in names]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"prediction folder {folder} is missing frame {path.name}: {path}")
    return paths


def _gt_sample(gt_reader: DatasetReader, name: str) -> VideoSample:
    try:
        return gt_reader.by_name(name)  # type: ignore[attr-defined]
    except KeyError:
        root = getattr(gt_reader, "annotations_dir", None) or getattr(gt_reader, "root", "the ground truth")
        raise FileNotFoundError(f"ground truth has no video {name!r}: {root}") from None


def score_video(bench: Benchmark, videos_dir: Path, sample: VideoSample,
                gt_reader: DatasetReader) -> list[ObjectScores]:
    """Per-object J/F of one video's predictions, read from ``videos_dir/<video>/``.

    ``gt_reader``: the reader whose annotations are the ground truth (the data reader itself, or one
    opened on ``--gt``); videos and frames are matched by name.

    VOS and Ref-DAVIS17: the video's label-map PNGs against its annotations, with the benchmark's task
    and protocol. Ref-YouTube-VOS: each expression's binary PNGs against its object in the
    annotations, over every frame (one "object" per expression, id = the expression id).
    """
    gt_sample = _gt_sample(gt_reader, sample.name)
    frames = video_frames(sample)
    names = [sample.frame_names[i] for i in frames]
    gt_paths = _ground_truth_paths(sample, gt_sample, frames, gt_reader)
    folder = videos_dir / sample.name
    if bench.layout == "refytvos":
        return _score_expressions(sample, gt_sample, gt_reader, folder, names, gt_paths)
    pred_paths = _prediction_paths(folder, names, sample.name)
    return evaluate_sequence([str(p) for p in gt_paths], [str(p) for p in pred_paths], name=sample.name,
                             frame_names=names, task=bench.score_task, protocol=bench.protocol)


def _score_expressions(sample: VideoSample, gt_sample: VideoSample, gt_reader: DatasetReader, folder: Path,
                       names: Sequence[str], gt_paths: Sequence[Path]) -> list[ObjectScores]:
    gt_objects = {e.exp_id: e.obj_id for e in gt_sample.expressions}
    source = getattr(gt_reader, "meta_path", "the ground truth")
    numeric = all(e.exp_id.isdigit() for e in sample.expressions)
    if not folder.is_dir():
        raise FileNotFoundError(f"prediction folder of video {sample.name!r} not found: {folder}")
    plans = []
    for position, expression in enumerate(sample.expressions):
        obj = gt_objects.get(expression.exp_id)
        if obj is None:
            raise ValueError(f"{source} gives no object id for expression {expression.exp_id} "
                             f"of video {sample.name!r}")
        preds = _prediction_paths(folder / expression.exp_id, names, f"{sample.name}/{expression.exp_id}",
                                  "expression")
        plans.append((int(expression.exp_id) if numeric else position + 1, obj, preds))
    j = np.zeros((len(plans), len(names)))
    f = np.zeros((len(plans), len(names)))
    for column, gt_path in enumerate(gt_paths):
        gt_labels = read_png_indices(gt_path)
        for row, (_, obj, preds) in enumerate(plans):
            pred = load_binary_mask(preds[column])
            if pred.shape != gt_labels.shape:
                raise ValueError(f"prediction {preds[column]} is {pred.shape[0]}x{pred.shape[1]} (HxW) but "
                                 f"ground truth {gt_path} is {gt_labels.shape[0]}x{gt_labels.shape[1]}")
            pair_j, pair_f = frame_scores((gt_labels == obj).astype(np.uint8), pred.astype(np.uint8), [(1, 1)])
            j[row, column], f[row, column] = pair_j[0], pair_f[0]
    return [ObjectScores(sample.name, object_id, j[row].copy(), f[row].copy(), list(names), None)
            for row, (object_id, _, _) in enumerate(plans)]


def check_ground_truth(bench: Benchmark, sample: VideoSample, gt_reader: DatasetReader) -> None:
    """Fail before any model runs when a video cannot be scored: a scored frame without its annotation,
    or (Ref-YouTube-VOS) an expression without its object id."""
    gt_sample = _gt_sample(gt_reader, sample.name)
    _ground_truth_paths(sample, gt_sample, video_frames(sample), gt_reader)
    if bench.layout == "refytvos":
        gt_objects = {e.exp_id: e.obj_id for e in gt_sample.expressions}
        for expression in sample.expressions:
            if gt_objects.get(expression.exp_id) is None:
                source = getattr(gt_reader, "meta_path", "the ground truth")
                raise ValueError(f"{source} gives no object id for expression {expression.exp_id} "
                                 f"of video {sample.name!r}")


def merge_video_scores(bench: Benchmark, shares: Iterable[Sequence[ObjectScores]]) -> VOSResult:
    """One :class:`VOSResult` from every rank's per-object scores (sorted by video and object)."""
    task = "referring" if bench.layout == "refytvos" else bench.score_task
    protocol = "all_frames" if bench.layout == "refytvos" else bench.protocol
    results = [VOSResult(list(objects), task=task, protocol=protocol) for objects in shares]
    return merge_results(results)
