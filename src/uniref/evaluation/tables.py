"""The metrics table of a benchmark run: one row per unit (split, shot count, annotator split), an
optional mean row, printed as text and saved (atomically) as JSON and CSV.

Numbers are percentages. JSON keeps full precision; the printed table and the CSV round to 2 and 3
decimals. Paths in the JSON are relative to the output folder, so two runs of the same predictions in
different folders (e.g. one process and several) write identical files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uniref.io.atomic import atomic_write_text, ensure_writable_dir

__all__ = ["MetricsTable"]

METRICS_STEM = "metrics"


@dataclass
class MetricsTable:
    """Rows of metrics for one benchmark.

    Attributes:
        benchmark: the benchmark name.
        rows: one dict per unit; ``"split"`` first, then metric columns (floats, percent) and counts.
        mean: the column-wise mean of the rows (Ref-DAVIS17's four splits), or None.
        details: per-unit extras (per-sequence and per-object VOS tables, FSS per-class IoU).
        files: per-unit relative paths of what was written (predictions, zips).
        notes: lines printed under the table (e.g. which server a zip goes to).
    """

    benchmark: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    mean: dict[str, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def columns(self) -> list[str]:
        names: list[str] = []
        for row in self.rows + ([self.mean] if self.mean else []):
            for key in row:
                if key not in names:
                    names.append(key)
        return names

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"benchmark": self.benchmark, "rows": self.rows}
        if self.mean is not None:
            data["mean"] = self.mean
        data["files"] = self.files
        data["details"] = self.details
        return data

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2, sort_keys=False)

    def _table_rows(self) -> list[dict[str, Any]]:
        return self.rows + ([dict(self.mean, split="mean")] if self.mean is not None else [])

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = self.columns()
        writer.writerow(columns)
        for row in self._table_rows():
            writer.writerow([_cell(row.get(c), 3) for c in columns])
        return buffer.getvalue()

    def format(self) -> str:
        """The table as aligned text (2 decimals), then the notes."""
        columns = self.columns()
        cells = [columns] + [[_cell(row.get(c), 2) for c in columns] for row in self._table_rows()]
        widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
        lines = [f"{self.benchmark}"]
        for number, line in enumerate(cells):
            lines.append("  ".join(value.rjust(width) if i else value.ljust(width)
                                   for i, (value, width) in enumerate(zip(line, widths))))
            if number == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines += self.notes
        return "\n".join(lines)

    def save(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``metrics.json`` and ``metrics.csv`` into ``out_dir`` atomically (replacing old ones)."""
        folder = ensure_writable_dir(out_dir)
        return [
            atomic_write_text(folder / f"{METRICS_STEM}.json", self.to_json() + "\n", overwrite=True),
            atomic_write_text(folder / f"{METRICS_STEM}.csv", self.to_csv(), overwrite=True),
        ]


def _cell(value: Any, decimals: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{decimals}f}"
    return str(value)


def _finite(value: Any) -> Any:
    # JSON has no NaN; an unscorable column (no object at all) is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
