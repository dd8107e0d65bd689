"""Run a benchmark end to end: predictors over a dataset, predictions in the benchmark's layout, a
submission zip where a server scores it, local metrics where the ground truth is at hand.

:func:`evaluate` runs a model (``uniref eval``); :func:`score` scores an existing prediction folder
(``uniref score``). Both

* split the work across ``torchrun`` processes (each rank takes a strided share of the videos or
  entries) and gather the per-rank metric states, so any number of processes prints the same table;
* write one unit (split / shot count / annotator split) at a time into ``<out>/<unit>/``;
* return a :class:`RunResult` on every rank; rank 0 prints the table and writes ``metrics.json`` and
  ``metrics.csv`` into the output folder.

``evaluate`` resumes: videos whose folder is complete and entries already in the prediction files are
skipped, so an interrupted run continues where it stopped.

Protocols (spec 9 and 13):

* RIS / FSS: the predictors' top-1 mask per entry; an entry whose box is empty after clipping counts as
  no prediction (an empty mask), as the official post-processing drops it. FSS supports are the first
  k other images of the class (the reader's order).
* VOS: each object is given by its mask on its first annotated frame; the score threshold is the
  benchmark's preset (DAVIS 0.3, YouTube-VOS 0.4, LVOS 0.5, MOSE 0.4). DAVIS-style folders hold every
  frame; YouTube-VOS folders only the frames ``meta.json`` lists, i.e. none before the first object.
* Scores: DAVIS 2017 with the official object rule; LVOS, YouTube-VOS and MOSE (objects may start late)
  with the ``first_appearance`` rule of :mod:`uniref.evaluation.davis`; Ref-DAVIS17 unsupervised
  (Hungarian matching), the four annotator splits averaged; Ref-YouTube-VOS per expression over every
  frame, then averaged over expressions.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uniref.data.datasets import DatasetError, DatasetReader, ImageSample, VideoSample, build_dataset
from uniref.evaluation.benchmarks import Benchmark, EvalUnit, get_benchmark
from uniref.evaluation.davis import VOSResult, mean_over_splits
from uniref.evaluation.distributed import DistContext, gather_collectively, init_distributed, run_collectively
from uniref.evaluation.layouts import (
    ENTRIES_FILE,
    EntryLog,
    entry_files,
    expected_video_files,
    finalize_entries,
    is_complete,
    make_zip,
    read_entries,
    staged_folder,
    video_folder,
    video_frames,
    videos_root,
)
from uniref.evaluation.scoring import (
    check_ground_truth,
    merge_entry_states,
    merge_video_scores,
    score_entries,
    score_video,
)
from uniref.evaluation.tables import MetricsTable

__all__ = ["RunResult", "UnitReport", "evaluate", "load_model", "score"]

DEFAULT_OUT_ROOT = Path("uniref_eval")


@dataclass
class UnitReport:
    """What one unit did: items predicted now, items skipped because an earlier run wrote them."""

    unit: str
    predicted: int = 0
    skipped: int = 0


@dataclass
class RunResult:
    """The metrics table, what each unit did, and the files rank 0 wrote."""

    table: MetricsTable
    reports: list[UnitReport] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def evaluate(
    benchmark: str,
    data: str | Path,
    weights: str | Path,
    *,
    config: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    shots: int | None = None,
    engine: str = "fast",
    gt: str | Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Predict, write, zip and score one benchmark (``uniref eval``).

    Args:
        benchmark: a name of :data:`uniref.evaluation.benchmarks.BENCHMARKS`.
        data: the dataset root, as downloaded.
        weights: a ``.safetensors`` of ours or an official ``.pth``.
        config: the model config name; optional when the weights store their config.
        split: one split (default: the paper's splits; Ref-DAVIS17: ``val`` = the four annotator splits,
            ``val-2`` = one of them).
        limit: only the first ``limit`` videos / entries of each unit.
        out: output folder (default ``uniref_eval/<benchmark>``).
        device: ``cpu``, ``cuda``, ``cuda:1``...; under torchrun ``cuda`` means ``cuda:<LOCAL_RANK>``.
        shots: FSS-1000: one shot count instead of both 1 and 5.
        engine: the video engine, ``fast`` or ``reference``.
        gt: a copy of the benchmark holding the ground truth of the split (YouTube-VOS, MOSE,
            Ref-YouTube-VOS validation), to score locally too.
        progress: show tqdm bars (rank 0 only).
    """
    bench = get_benchmark(benchmark)
    units = bench.units(split, shots)
    _check_limit(limit)
    if engine not in ("fast", "reference"):
        raise ValueError(f"engine must be 'fast' or 'reference', got {engine!r}")
    out_dir = Path(out) if out is not None else DEFAULT_OUT_ROOT / bench.name
    ctx = init_distributed()
    try:
        run_device = _rank_device(device, ctx)
        model = run_collectively(ctx, lambda: load_model(config, weights, run_device))
        runner = _Runner(bench, ctx, Path(data), Path(gt) if gt is not None else None, limit, progress)
        return runner.run(units, out_dir, model=model, engine=engine)
    finally:
        ctx.close()


def score(
    benchmark: str,
    pred: str | Path,
    data: str | Path,
    *,
    split: str | None = None,
    shots: int | None = None,
    gt: str | Path | None = None,
    limit: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Score an existing prediction folder (``uniref score``); no model runs.

    ``pred`` is what ``uniref eval`` wrote (``<pred>/<unit>/...``) or, for a single unit, the unit's
    folder itself: a DAVIS-style ``<video>/<frame>.png`` folder, an ``Annotations`` folder, a
    ``predictions.jsonl`` file. The table is written into ``out`` (default: the prediction folder).
    """
    bench = get_benchmark(benchmark)
    units = bench.units(split, shots)
    _check_limit(limit)
    pred = Path(pred)
    if not pred.exists():
        raise FileNotFoundError(f"prediction folder not found: {pred}")
    out_dir = Path(out) if out is not None else (pred.parent if pred.is_file() else pred)
    ctx = init_distributed()
    try:
        runner = _Runner(bench, ctx, Path(data), Path(gt) if gt is not None else None, limit, progress)
        return runner.run(units, out_dir, pred_root=pred)
    finally:
        ctx.close()


def load_model(config: str | None, weights: str | Path, device: str = "cpu"):
    """Build the model for evaluation.

    The config comes from ``config`` (a name) and from the weights: one of our ``.safetensors``
    stores the config it was saved with, which is then used (it records the sizes the weights belong
    to); its name must match ``config`` when both are given.
    """
    from uniref.checkpoint import config_from_checkpoint
    from uniref.configs import ModelConfig, get_config
    from uniref.modeling.build import build_model

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"weights not found: {weights}")
    stored = config_from_checkpoint(weights)
    if config is None:
        if stored is None:
            raise ValueError(f"{weights} stores no config; pass --config NAME (r50, swinl, tiny, ...)")
        model_config = ModelConfig.from_dict(stored)
    else:
        model_config = get_config(config)
        if stored is not None:
            if stored.get("name", config) != config:
                raise ValueError(f"{weights} was saved with config {stored.get('name')!r}, not {config!r}")
            model_config = ModelConfig.from_dict(stored)
    return build_model(model_config, weights=weights, device=device)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")


def _rank_device(device: str, ctx: DistContext) -> str:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r} ({error})") from error
    if parsed.type != "cpu" and parsed.index is None and ctx.distributed:
        return f"{parsed.type}:{ctx.local_rank}"
    return device


def _one_line(error: DatasetError) -> str:
    return " ".join(str(error).split())


def _open(name: str, root: Path, unit: EvalUnit) -> DatasetReader:
    try:
        return build_dataset(name, root, **unit.dataset_kwargs)
    except DatasetError as error:
        # Reader messages may list several candidate paths on separate lines; the command line prints
        # only the first line of an error, so the paths are folded into it.
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError
        raise kind(_one_line(error)) from error


class _Runner:
    def __init__(self, bench: Benchmark, ctx: DistContext, data: Path, gt: Path | None, limit: int | None,
                 progress: bool) -> None:
        self.bench = bench
        self.ctx = ctx
        self.data = data
        self.gt = gt
        self.limit = limit
        self.progress = progress

    # ---------------------------------------------------------------- orchestration
    def run(self, units: Sequence[EvalUnit], out_dir: Path, *, model: Any = None, engine: str = "fast",
            pred_root: Path | None = None) -> RunResult:
        bench, ctx = self.bench, self.ctx
        table = MetricsTable(bench.name)
        reports: list[UnitReport] = []
        results: list[VOSResult] = []
        for unit in units:
            reader = run_collectively(ctx, lambda: _open(bench.dataset, self.data, unit))
            indices = list(range(len(reader)))[: self.limit]
            scorable = bench.scorable(unit.split, self.gt is not None)
            gt_reader = reader
            if scorable and bench.is_video and self.gt is not None:
                gt_reader = run_collectively(ctx, lambda: _open(bench.dataset, self.gt, unit))
            files: dict[str, str] = {}
            if pred_root is None:
                unit_dir = out_dir / unit.name
                report = self._predict(unit, reader, gt_reader if scorable else None, indices, unit_dir,
                                       model, engine)
                reports.append(report)
                files["predictions"] = _relative(unit_dir / ENTRIES_FILE if bench.layout == "entries" else unit_dir,
                                                 out_dir)
                zip_layout = bench.zip_layout_for(unit.split)
                if zip_layout is not None:
                    destination = out_dir / f"{bench.name}-{unit.name}.zip"
                    run_collectively(ctx, lambda: make_zip(unit_dir, bench.layout, zip_layout, destination)
                                     if ctx.is_main else None)
                    files["zip"] = _relative(destination, out_dir)
                    where = bench.server or "the benchmark's server"
                    table.notes.append(f"{unit.name}: upload {destination} to {where}")
                source = unit_dir
            else:
                if not scorable:
                    raise ValueError(f"{bench.name} {unit.name}: the ground truth is not public, so there is nothing "
                                     "to score against; pass --gt ROOT (a copy of the benchmark with annotations)")
                source = self._pred_unit(pred_root, unit, len(units))
            table.files[unit.name] = files
            if not scorable:
                table.rows.append({"split": unit.name, ("videos" if bench.is_video else "entries"): len(indices)})
                table.notes.append(f"{unit.name}: ground truth is not public; scored by the server "
                                   "(pass --gt ROOT, a copy with annotations, to score locally)")
                continue
            row, details, result = self._score(unit, reader, gt_reader, indices, source)
            table.rows.append(row)
            table.details[unit.name] = details
            if result is not None:
                results.append(result)
        if bench.average_units and len(results) > 1 and len(results) == len(table.rows):
            table.mean = mean_over_splits(results)
        written: list[Path] = []
        if ctx.is_main:
            for report in reports:
                print(f"{bench.name} {report.unit}: predicted {report.predicted}, "
                      f"skipped {report.skipped} already written", file=sys.stderr)
            print(table.format())
            written = table.save(out_dir)
            print(f"wrote {written[0]} and {written[1]}", file=sys.stderr)
        ctx.barrier()
        return RunResult(table, reports, written)

    def _pred_unit(self, pred_root: Path, unit: EvalUnit, count: int) -> Path:
        candidate = pred_root / unit.name
        if candidate.exists():
            return candidate
        if count == 1:
            return pred_root
        raise FileNotFoundError(f"predictions of {self.bench.name} split {unit.name} not found: {candidate}")

    # ---------------------------------------------------------------- prediction
    def _predict(self, unit: EvalUnit, reader: DatasetReader, gt_reader: DatasetReader | None,
                 indices: list[int], unit_dir: Path, model: Any, engine: str) -> UnitReport:
        bench, ctx = self.bench, self.ctx
        share = ctx.shard(indices)
        if bench.is_video and gt_reader is not None:
            # Fail before the model runs on anything when a video of the share cannot be scored.
            run_collectively(ctx, lambda: [check_ground_truth(bench, reader[i], gt_reader) for i in share])
        if bench.layout == "entries":
            step = lambda: self._predict_entries(reader, share, unit_dir, model, unit)  # noqa: E731
        else:
            step = lambda: self._predict_videos(reader, share, unit_dir, model, engine, unit)  # noqa: E731
        counts = gather_collectively(ctx, step)
        if bench.layout == "entries":
            order = [reader[i].sample_id for i in indices]
            run_collectively(ctx, lambda: finalize_entries(unit_dir, order) if ctx.is_main else None)
        return UnitReport(unit.name, sum(c[0] for c in counts), sum(c[1] for c in counts))

    def _bar(self, items: list[int], unit: EvalUnit, what: str):
        from tqdm import tqdm

        return tqdm(items, desc=f"{self.bench.name} {unit.name}", unit=what, file=sys.stderr,
                    disable=not (self.progress and self.ctx.is_main), leave=False)

    def _predict_entries(self, reader: DatasetReader, share: list[int], unit_dir: Path, model: Any,
                         unit: EvalUnit) -> tuple[int, int]:
        from uniref.inference.image_predictor import ImagePredictor

        log = EntryLog(unit_dir, self.ctx.rank)
        done = log.done_ids()
        predictor = ImagePredictor(model)
        predicted = skipped = 0
        try:
            for index in self._bar(share, unit, "entry"):
                sample: ImageSample = reader[index]
                if sample.sample_id in done:
                    skipped += 1
                    continue
                try:
                    if self.bench.task == "fss":
                        examples = [(s.image_path, s.load_mask()) for s in sample.supports]
                        result = predictor.segment(sample.image_path, examples=examples)
                    else:
                        result = predictor.segment(sample.image_path, text=sample.expression)
                except ValueError as error:
                    raise ValueError(f"entry {sample.sample_id!r} ({sample.image_path}): {error}") from error
                log.append(_entry_record(self.bench, sample, result))
                predicted += 1
        finally:
            log.close()
        return predicted, skipped

    def _predict_videos(self, reader: DatasetReader, share: list[int], unit_dir: Path, model: Any, engine: str,
                        unit: EvalUnit) -> tuple[int, int]:
        from uniref.inference.video_predictor import VideoPredictor

        bench = self.bench
        predictor = VideoPredictor(model, engine=engine, preset=bench.vos_preset or "davis",
                                   rvos_mode=bench.rvos_mode or "propagate")
        predicted = skipped = 0
        for index in self._bar(share, unit, "video"):
            sample: VideoSample = reader[index]
            final = video_folder(bench.layout, unit_dir, sample.name)
            if is_complete(final, expected_video_files(bench.layout, sample)):
                skipped += 1
                continue
            try:
                with staged_folder(final) as staging:
                    if bench.task == "vos":
                        _write_vos(predictor, sample, staging)
                    elif bench.layout == "refytvos":
                        _write_refytvos(predictor, sample, staging)
                    else:
                        _write_refdavis(predictor, sample, staging)
            except ValueError as error:
                raise ValueError(f"video {sample.name!r}: {error}") from error
            predicted += 1
        return predicted, skipped

    # ---------------------------------------------------------------- scoring
    def _score(self, unit: EvalUnit, reader: DatasetReader, gt_reader: DatasetReader, indices: list[int],
               source: Path) -> tuple[dict[str, Any], dict[str, Any], VOSResult | None]:
        bench, ctx = self.bench, self.ctx
        share = ctx.shard(indices)
        if bench.layout == "entries":
            files = [source] if source.is_file() else entry_files(source)
            if not files:
                raise FileNotFoundError(f"no predictions of {bench.name} {unit.name}: {source / ENTRIES_FILE}")
            states = gather_collectively(
                ctx, lambda: score_entries(bench, (reader[i] for i in share), read_entries(files), files[0]))
            metrics, details = merge_entry_states(bench, states)
            return {"split": unit.name, **metrics}, details, None
        videos_dir = _videos_dir(bench, source)
        shares = gather_collectively(
            ctx, lambda: [obj for i in share for obj in score_video(bench, videos_dir, reader[i], gt_reader)])
        result = merge_video_scores(bench, shares)
        row = {"split": unit.name, **result.global_table(), "videos": len(indices), "objects": len(result.objects)}
        details = {"sequences": result.sequence_table(), "objects": result.object_table()}
        return row, details, result


def _videos_dir(bench: Benchmark, source: Path) -> Path:
    # `uniref score` also takes the Annotations folder itself, or a folder of video folders.
    if bench.layout in ("server", "refytvos") and not (source / "Annotations").is_dir():
        return source
    return videos_root(bench.layout, source)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _entry_record(bench: Benchmark, sample: ImageSample, result: Any) -> dict[str, Any]:
    from uniref.io.rle import encode_rle

    height, width = result.mask.shape
    x0, y0, x1, y1 = (float(v) for v in result.box)
    record: dict[str, Any] = {
        "id": sample.sample_id,
        "image": sample.image_path.name,
        "height": int(height),
        "width": int(width),
        "segmentation": encode_rle(result.mask),
        "score": float(result.score),
        "bbox": [x0, y0, x1 - x0, y1 - y0],  # COCO xywh, original pixels
        "box_empty": bool(result.box_empty),
    }
    if bench.task == "fss":
        record["class"] = _jsonable(sample.info.get("class_name"))
        record["supports"] = [str(s) for s in sample.info.get("support_names", ())]
    else:
        record["expression"] = sample.expression
        for key in ("ref_id", "sent_id", "ann_id", "image_id"):
            if key in sample.info:
                record[key] = _jsonable(sample.info[key])
    return record


def _write_vos(predictor: Any, sample: VideoSample, folder: Path) -> None:
    from uniref.io.masks import save_label_png

    state = predictor.init_state(list(sample.frame_paths))
    for obj in sample.object_ids:
        predictor.add_mask(state, sample.first_masks[obj][0], obj, sample.load_first_mask(obj))
    wanted = set(video_frames(sample))
    for result in predictor.propagate(state):
        if result.frame_idx in wanted:
            save_label_png(folder / f"{sample.frame_names[result.frame_idx]}.png", result.label_map, overwrite=True)


MAX_IDS = 255  # label-map ids; Ref-YouTube-VOS expressions are tracked in groups of at most this many


def _write_refytvos(predictor: Any, sample: VideoSample, folder: Path) -> None:
    from uniref.io.masks import save_binary_png

    wanted = set(video_frames(sample))
    expressions = list(sample.expressions)
    for start in range(0, len(expressions), MAX_IDS):
        group = expressions[start : start + MAX_IDS]
        state = predictor.init_state(list(sample.frame_paths))
        for obj_id, expression in enumerate(group, start=1):
            predictor.add_text(state, obj_id, expression.text)
            (folder / expression.exp_id).mkdir(parents=True, exist_ok=True)
        for result in predictor.propagate(state):
            if result.frame_idx not in wanted:
                continue
            masks = dict(zip(result.obj_ids, result.masks))
            name = sample.frame_names[result.frame_idx]
            for obj_id, expression in enumerate(group, start=1):
                mask = masks.get(obj_id)
                if mask is None:
                    mask = np.zeros(result.label_map.shape, dtype=bool)
                save_binary_png(folder / expression.exp_id / f"{name}.png", mask, overwrite=True)


def _write_refdavis(predictor: Any, sample: VideoSample, folder: Path) -> None:
    from uniref.io.masks import save_label_png

    state = predictor.init_state(list(sample.frame_paths))
    for expression in sample.expressions:
        if expression.obj_id is None:
            raise ValueError(f"expression {expression.exp_id} has no object id")
        predictor.add_text(state, expression.obj_id, expression.text)
    wanted = set(video_frames(sample))
    for result in predictor.propagate(state):
        if result.frame_idx in wanted:
            save_label_png(folder / f"{sample.frame_names[result.frame_idx]}.png", result.label_map, overwrite=True)
