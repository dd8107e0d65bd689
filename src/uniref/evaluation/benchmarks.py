"""One entry per benchmark of the paper: which reader, which predictor settings, which output layout,
how it is scored and what goes to a server.

A benchmark run is split into *units*, one per row of the metrics table: a split of RefCOCO, a shot
count of FSS-1000, an annotator split of Ref-DAVIS17. Each unit writes its predictions into
``<out>/<unit name>/``.

Layouts (what each unit folder holds):

* ``entries``: ``predictions.jsonl``, one JSON object per RIS/FSS entry with its mask as COCO RLE;
* ``davis``: ``<video>/<frame>.png`` palette PNGs for every frame (DAVIS, LVOS, Ref-DAVIS17);
* ``server``: ``Annotations/<video>/<frame>.png`` palette PNGs for the frames the server expects
  (YouTube-VOS, MOSE), zipped as ``Annotations/...``;
* ``refytvos``: ``Annotations/<video>/<exp_id>/<frame>.png`` binary PNGs (0/255), zipped as
  ``Annotations/...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BENCHMARKS", "Benchmark", "EvalUnit", "get_benchmark"]


@dataclass(frozen=True)
class EvalUnit:
    """One row of the table: its label (also its output sub-folder) and the reader's keyword arguments."""

    name: str
    split: str
    dataset_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    """How one benchmark is run, written and scored.

    Attributes:
        name: the command-line name.
        dataset: the reader's registry name (`uniref.data.datasets.build_dataset`).
        task: ``ris``, ``fss``, ``vos`` or ``rvos``.
        layout: ``entries``, ``davis``, ``server`` or ``refytvos`` (module docstring).
        default_splits: the splits run when ``--split`` is not given (the paper's).
        ground_truth: ``dataset`` when the downloaded data holds the ground truth of the scored split,
            ``optional`` when it does not (scored only with ``--gt``).
        score_task, protocol: the arguments of :func:`uniref.evaluation.davis.evaluate_sequence`.
        vos_preset: the VOS score threshold preset (spec 9.3).
        rvos_mode: ``propagate`` (Ref-YouTube-VOS) or ``per_frame`` (Ref-DAVIS17).
        zip_layout: ``annotations`` (zip ``Annotations/...``), ``root`` (video folders at the zip root,
            the DAVIS server) or None (no zip).
        server_splits: splits without public ground truth: never scored, always zipped.
        average_units: also report the mean of the units (Ref-DAVIS17's four annotator splits).
        shots: FSS shot counts run when ``--shots`` is not given.
        server: where the zip goes, for the printed note.
    """

    name: str
    dataset: str
    task: str
    layout: str
    default_splits: tuple[str, ...]
    ground_truth: str = "dataset"
    score_task: str = "semi-supervised"
    protocol: str = "davis2017"
    vos_preset: str | None = None
    rvos_mode: str | None = None
    zip_layout: str | None = None
    server_splits: tuple[str, ...] = ()
    server_zip_layout: str | None = None
    average_units: bool = False
    shots: tuple[int, ...] = ()
    server: str | None = None

    @property
    def is_video(self) -> bool:
        return self.task in ("vos", "rvos")

    def units(self, split: str | None = None, shots: int | None = None) -> list[EvalUnit]:
        """The units of one run. ``split`` narrows the default splits; ``shots`` the FSS shot counts."""
        if shots is not None and self.task != "fss":
            raise ValueError(f"--shots applies to few-shot benchmarks (fss1000), not {self.name}")
        if shots is not None and shots < 1:
            raise ValueError(f"--shots must be >= 1, got {shots}")
        if self.name == "refdavis":
            return _refdavis_units(split)
        splits = (split,) if split is not None else self.default_splits
        if self.task == "fss":
            counts = (shots,) if shots is not None else self.shots
            return [EvalUnit(f"{s}-{k}shot", s, {"split": s, "shots": k}) for s in splits for k in counts]
        return [EvalUnit(s, s, {"split": s}) for s in splits]

    def is_server_split(self, split: str) -> bool:
        return split in self.server_splits

    def scorable(self, split: str, has_gt: bool) -> bool:
        """Whether a unit of ``split`` can be scored locally (``has_gt``: ``--gt`` was given)."""
        if has_gt:
            return True
        return self.ground_truth == "dataset" and not self.is_server_split(split)

    def zip_layout_for(self, split: str) -> str | None:
        if self.is_server_split(split):
            return self.server_zip_layout or self.zip_layout
        return self.zip_layout


REFDAVIS_SETS = 4


def _refdavis_units(split: str | None) -> list[EvalUnit]:
    # "val" runs the four annotator splits; "val-2" one of them (UniRef's refdavis-val-0..3 names).
    split = split or "val"
    base, _, suffix = split.rpartition("-")
    if base and suffix.isdigit():
        annotation_set = int(suffix)
        if annotation_set not in range(REFDAVIS_SETS):
            raise ValueError(f"Ref-DAVIS17 annotator split must be {base}-0 .. {base}-3, got {split!r}")
        return [EvalUnit(split, base, {"split": base, "annotation_set": annotation_set})]
    return [EvalUnit(f"{split}-{k}", split, {"split": split, "annotation_set": k}) for k in range(REFDAVIS_SETS)]


def _ris(name: str, splits: tuple[str, ...]) -> Benchmark:
    return Benchmark(name, name, "ris", "entries", splits)


BENCHMARKS: Mapping[str, Benchmark] = {
    "refcoco": _ris("refcoco", ("val", "testA", "testB")),
    "refcoco+": _ris("refcoco+", ("val", "testA", "testB")),
    "refcocog": _ris("refcocog", ("val", "test")),
    "fss1000": Benchmark("fss1000", "fss1000", "fss", "entries", ("val",), shots=(1, 5)),
    "davis17": Benchmark(
        "davis17", "davis17", "vos", "davis", ("val",), vos_preset="davis",
        server_splits=("test-dev", "test", "test-challenge"), server_zip_layout="root",
        server="the DAVIS CodaLab server (folders at the zip root)",
    ),
    "ytvos18": Benchmark(
        "ytvos18", "ytvos18", "vos", "server", ("valid",), ground_truth="optional", protocol="first_appearance",
        vos_preset="ytvos", zip_layout="annotations", server="the YouTube-VOS 2018 CodaLab server",
    ),
    "ytvos19": Benchmark(
        "ytvos19", "ytvos19", "vos", "server", ("valid",), ground_truth="optional", protocol="first_appearance",
        vos_preset="ytvos", zip_layout="annotations", server="the YouTube-VOS 2019 CodaLab server",
    ),
    "mose": Benchmark(
        "mose", "mose", "vos", "server", ("valid",), ground_truth="optional", protocol="first_appearance",
        vos_preset="mose", zip_layout="annotations", server="the MOSE CodaLab server",
    ),
    "lvos": Benchmark(
        "lvos", "lvos", "vos", "davis", ("valid",), protocol="first_appearance", vos_preset="lvos",
        server_splits=("test",), server_zip_layout="root", server="the LVOS CodaLab server",
    ),
    "refytvos": Benchmark(
        "refytvos", "refytvos", "rvos", "refytvos", ("valid",), ground_truth="optional", rvos_mode="propagate",
        zip_layout="annotations", server="the Ref-YouTube-VOS CodaLab server",
    ),
    "refdavis": Benchmark(
        "refdavis", "refdavis", "rvos", "davis", ("val",), score_task="unsupervised", rvos_mode="per_frame",
        average_units=True,
    ),
}


def get_benchmark(name: str) -> Benchmark:
    """The entry of a benchmark name (case-insensitive)."""
    bench = BENCHMARKS.get(name.lower())
    if bench is None:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return bench
